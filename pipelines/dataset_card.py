"""DVC stage dataset_card: counts, distributions and a QA contact sheet from the shards
(data/<profile>/card/{card.md, card.json, qa_contact_sheet.png, distributions.png})."""
from __future__ import annotations

import logging

from anyhead.card import write_card
from pipelines.common import stage_args

log = logging.getLogger("dataset_card")


def main() -> None:
    _, cfg = stage_args(__doc__)
    stats = write_card(cfg.paths.shards, cfg.paths.card, cfg.card.contact_sheet_samples)
    for k, c in stats["splits"].items():
        log.info("%s: %d samples, %d identities, %d skipped", k, c["samples"], c["identities"], c["skipped"])


if __name__ == "__main__":
    main()
