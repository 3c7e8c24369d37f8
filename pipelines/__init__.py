"""Thin DVC stage entry points: each reads only its keys from params.yaml and calls the libraries."""
