"""Train one learned method of the registry on the profile's training split with the shared budget.

    python -m benchmarks.train --method splatter-image [--profile tiny]
writes data/<profile>/train/<method>/{checkpoint.pt, train_log.csv, metrics.json}.
"""
from __future__ import annotations

import argparse
import logging

from anyhead.config import load_params
from recon.train import train

from .methods import REGISTRY, get_method, learned_methods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop after this many steps (the LR schedule still spans train.steps): to match another run's budget")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    profile, prof = load_params(args.params, args.profile)
    if args.method not in REGISTRY:
        raise SystemExit(f"unknown method {args.method!r}; registered: {', '.join(sorted(REGISTRY))}")
    if args.method not in learned_methods():
        raise SystemExit(f"{args.method} is not a learned method; nothing to train (learned: {', '.join(learned_methods())})")
    method = get_method(args.method, prof)
    cfg = method.train_config()
    if args.max_steps:
        cfg.pop("time_budget_min", None)
    train(cfg, f"data/{profile}/shards/train", f"data/{profile}/train/{args.method}", not args.no_resume,
          stop_after=args.max_steps)


if __name__ == "__main__":
    main()
