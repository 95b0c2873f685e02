"""`conn.sftp()` for the unit tests' fake connections: ssh.put_private's open/chmod/write
conversation, handed to a callback (path, data, mode) when the file is closed."""
from __future__ import annotations

import io
from typing import Callable


class FakeSftp:
    def __init__(self, on_close: Callable[[str, bytes, int | None], None]) -> None:
        self.on_close = on_close

    def open(self, path: str, mode: str = "r") -> "_File":
        return _File(path, mode, self.on_close)


class _File(io.BytesIO):
    def __init__(self, path: str, mode: str, on_close: Callable[..., None]) -> None:
        super().__init__()
        self.path, self.open_mode, self.on_close, self.perm = path, mode, on_close, None

    def chmod(self, mode: int) -> None:
        assert self.tell() == 0, "chmod after data was written"
        self.perm = mode

    def set_pipelined(self, pipelined: bool = True) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.on_close(self.path, self.getvalue(), self.perm)
        super().close()
