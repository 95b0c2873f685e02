"""Config templates in files/, rendered with Jinja2 (pure: text in, text out)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

FILES_DIR = Path(__file__).resolve().parent.parent.parent / "files"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(FILES_DIR)),
    undefined=jinja2.StrictUndefined,  # a missing value is an error, never an empty string
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **values: Any) -> str:
    """Render files/<template> with `values`; unknown names raise jinja2.UndefinedError."""
    return _env.get_template(template).render(**values)
