"""Build the stand-in as one executable zipapp named `k3s` (python3 build.py OUT_DIR).

OUT_DIR then holds what an airgap k3s install needs: `k3s` and `install.sh` beside it.

The file holds the `standin` package and a copy of the pure-Python `pymysql` package
found in the running interpreter's environment, with `#!/usr/bin/python3`, so a lab host
needs only Debian 12's python3 and the openssl CLI. Upload it as /usr/local/bin/k3s
(mode 0755) and run install.sh with INSTALL_K3S_SKIP_DOWNLOAD=true.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN = "import sys\nfrom standin.cli import main\nsys.exit(main())\n"


SKIP = {"build.py", "install.sh", "README.md"}


def _files(src: Path, prefix: str, skip: set[str]) -> list[tuple[str, Path]]:
    """(archive name, file) for a package's .py files, sorted, without caches."""
    return sorted((f"{prefix}/{p.relative_to(src).as_posix()}", p) for p in src.rglob("*.py")
                  if "__pycache__" not in p.parts and p.name not in skip)


def _add(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # same bytes every build
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data)


# Compiled in a fresh interpreter with a fixed hash seed: set constants are ordered by
# hash, so bytecode compiled under a random seed differs from build to build, and the
# binary's sha256 decides whether a deploy re-installs k3s on every node.
_COMPILE = """
import importlib.util, json, sys
out = {}
for name, path in json.load(sys.stdin):
    src = open(path, "rb").read()
    code = compile(src, name, "exec", dont_inherit=True)
    pyc = importlib._bootstrap_external._code_to_hash_pyc(
        code, importlib.util.source_hash(src), checked=False)
    out[name] = pyc.hex()
json.dump(out, sys.stdout)
"""


def compiled(files: list[tuple[str, Path]]) -> dict[str, bytes]:
    """Archive name -> unchecked hash-based .pyc bytes: zipimport cannot write a cache, so
    without them every `k3s ...` run compiled ~40 modules first ([lab] 0.17 s of CPU per
    start, paid eight times over when eight agents join on two cores). A host whose
    python3 has another bytecode version ignores them and compiles the .py beside them."""
    res = subprocess.run([sys.executable, "-s", "-c", _COMPILE],
                         input=json.dumps([(n, str(p)) for n, p in files]),
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    return {name: bytes.fromhex(h) for name, h in json.loads(res.stdout).items()}


def build(out_dir: str | Path) -> Path:
    """Write OUT_DIR/k3s and OUT_DIR/install.sh (mode 0755); return the path of k3s."""
    try:
        import pymysql
    except ImportError:
        raise RuntimeError("pymysql is not installed in this Python: the stand-in bundles "
                           "it (pip install pymysql, or use the project's .venv)") from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _files(HERE, "standin", SKIP) + _files(Path(pymysql.__file__).parent, "pymysql", set())
    pycs = compiled(files)
    target = out / "k3s"
    with open(target, "wb") as fh:
        fh.write(b"#!/usr/bin/python3\n")
        with zipfile.ZipFile(fh, "w") as zf:
            _add(zf, "__main__.py", MAIN.encode())
            for name, path in files:
                _add(zf, name, path.read_bytes())
                _add(zf, name + "c", pycs[name])
    target.chmod(0o755)
    script = out / "install.sh"
    script.write_bytes((HERE / "install.sh").read_bytes())
    script.chmod(0o755)
    return target


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else "."))
