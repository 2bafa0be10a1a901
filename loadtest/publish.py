"""Where every benchmark leaves its figures: `<name>.json` for machines, `<name>.md` for people."""

from __future__ import annotations

import json
from pathlib import Path


def publish(out_dir: str | Path, name: str, results: dict, report_markdown: str) -> None:
    """Write both files (creating the folder) and print the Markdown report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(report_markdown)
    print(report_markdown)
