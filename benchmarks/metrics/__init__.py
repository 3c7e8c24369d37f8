"""Metrics with their cards: image quality (PSNR, SSIM, LPIPS), geometry, timing."""
