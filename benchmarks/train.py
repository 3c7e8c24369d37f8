"""Train one learned method of the registry on the profile's training split with the shared budget.

    python -m benchmarks.train --method splatter-image [--profile tiny]
writes data/<profile>/train/<method>/{model.safetensors (EMA weights), train_state.safetensors (raw weights and
optimizer, for resuming), train_log.csv, metrics.json}.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging

from anyhead.config import ConfigError
from recon.config import load_config
from recon.train import train

from .methods import REGISTRY, learned_methods


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--init-from", default=None, help="warm-start from released weights of the same config")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="stop after this many steps (the LR schedule still spans train.steps): to match another run's budget")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO)
    if args.method not in REGISTRY:
        raise SystemExit(f"unknown method {args.method!r}; registered: {', '.join(REGISTRY)}")
    spec = REGISTRY[args.method]
    if not spec.learned:
        raise SystemExit(f"{args.method} is not a learned method; nothing to train (learned: {', '.join(learned_methods())})")
    try:
        cfg = load_config(args.params, args.profile)
        model_cfg = spec.model_config(cfg)
    except ConfigError as e:
        raise SystemExit(f"{args.params}: {e}") from None
    tcfg = dataclasses.replace(cfg.train, time_budget_min=None) if args.max_steps else cfg.train
    train(tcfg, model_cfg, cfg.paths.split("train"), cfg.paths.train_dir(args.method), not args.no_resume,
          stop_after=args.max_steps, ict_model=cfg.paths.ict_model, method=args.method, cache_dir=cfg.paths.cache("train"),
          init_from=args.init_from, photos=cfg.paths.split("photos"), captures=cfg.paths.split("captures"))


if __name__ == "__main__":
    main()
