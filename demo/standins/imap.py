"""A minimal IMAP4rev1 server on 127.0.0.1 (ephemeral port), enough for ``imaplib``: CAPABILITY, NOOP, LOGIN,
SELECT/EXAMINE, SEARCH/UID SEARCH (ALL, UNSEEN, SEEN, KEYWORD, UNKEYWORD), FETCH/UID FETCH (UID, FLAGS,
RFC822.SIZE, RFC822, BODY[], BODY.PEEK[], BODY[HEADER], BODY.PEEK[HEADER]), STORE/UID STORE (+FLAGS, -FLAGS, FLAGS),
LOGOUT. One mailbox, ``INBOX``, in memory.

    with ImapStandin(user="orders@example.com", password="pw") as imap:
        imap.add_message(raw_bytes)
        imap.host, imap.port
"""

from __future__ import annotations

import re
import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class StoredMessage:
    uid: int
    data: bytes
    flags: set[str] = field(default_factory=set)


_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"|\(|\)|[^\s()]+')


def _tokens(line: bytes) -> list[str]:
    out = []
    for match in _TOKEN.finditer(line):
        if match.group(1) is not None:
            out.append(re.sub(rb"\\(.)", rb"\1", match.group(1)).decode("utf-8", "replace"))
        else:
            out.append(match.group(0).decode("utf-8", "replace"))
    return out


def _header_of(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
        return data if end < 0 else data[: end + 2]
    return data[: end + 4]


class _Handler(socketserver.StreamRequestHandler):
    def send(self, text: str | bytes) -> None:
        self.wfile.write(text if isinstance(text, bytes) else text.encode("utf-8"))

    def handle(self) -> None:
        standin: ImapStandin = self.server.standin  # type: ignore[attr-defined]
        self.authenticated = False
        self.selected = False
        self.send("* OK [CAPABILITY IMAP4rev1] yidi stand-in ready\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            line = line.rstrip(b"\r\n")
            literal = re.search(rb"\{(\d+)\}$", line)
            if literal:  # a client literal: ask for it, then read it as one more token
                self.send("+ go ahead\r\n")
                data = self.rfile.read(int(literal.group(1)))
                line = line[: literal.start()] + b'"' + data.replace(b'"', b'\\"') + b'"' + self.rfile.readline(
                ).rstrip(b"\r\n")
            parts = _tokens(line)
            if len(parts) < 2:
                self.send("* BAD empty command\r\n")
                continue
            tag, command, args = parts[0], parts[1].upper(), parts[2:]
            uid_mode = False
            if command == "UID" and args:
                uid_mode, command, args = True, args[0].upper(), args[1:]
            try:
                if not self.dispatch(standin, tag, command, args, uid_mode):
                    return
            except (IndexError, ValueError) as exc:
                self.send(f"{tag} BAD {command} arguments invalid ({exc})\r\n")

    def dispatch(self, standin: ImapStandin, tag: str, command: str, args: list[str], uid_mode: bool) -> bool:
        if command == "CAPABILITY":
            self.send("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
            self.send(f"{tag} OK CAPABILITY completed\r\n")
        elif command == "NOOP":
            self.send(f"{tag} OK NOOP completed\r\n")
        elif command == "LOGOUT":
            self.send("* BYE logging out\r\n")
            self.send(f"{tag} OK LOGOUT completed\r\n")
            return False
        elif command == "LOGIN":
            if args[0] == standin.user and args[1] == standin.password:
                self.authenticated = True
                self.send(f"{tag} OK [CAPABILITY IMAP4rev1] LOGIN completed\r\n")
            else:
                standin.failed_logins += 1
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
        elif not self.authenticated:
            self.send(f"{tag} BAD not authenticated\r\n")
        elif command in ("SELECT", "EXAMINE"):
            if args[0].upper() != "INBOX":
                self.send(f"{tag} NO [NONEXISTENT] no such mailbox\r\n")
                return True
            self.selected = True
            with standin.lock:
                count = len(standin.messages)
                next_uid = standin.next_uid
            self.send(f"* {count} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
                      f"* OK [PERMANENTFLAGS (\\Seen \\Deleted \\*)] flags permitted\r\n"
                      f"* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT {next_uid}] next uid\r\n")
            self.send(f"{tag} OK [READ-WRITE] {command} completed\r\n")
        elif not self.selected:
            self.send(f"{tag} BAD no mailbox selected\r\n")
        elif command == "SEARCH":
            found = standin.search(args)
            numbers = [str(m.uid if uid_mode else seq) for seq, m in found]
            self.send(f"* SEARCH {' '.join(numbers)}\r\n".replace(" \r\n", "\r\n"))
            self.send(f"{tag} OK SEARCH completed\r\n")
        elif command == "FETCH":
            for seq, message in standin.select_set(args[0], uid_mode):
                self.send_fetch(seq, message, " ".join(args[1:]).strip("()").upper(), uid_mode)
            self.send(f"{tag} OK FETCH completed\r\n")
        elif command == "STORE":
            mode, flags = args[1].upper(), {a for a in args[2:] if a not in ("(", ")")}
            for seq, message in standin.select_set(args[0], uid_mode):
                with standin.lock:
                    if mode.startswith("+FLAGS"):
                        message.flags |= flags
                    elif mode.startswith("-FLAGS"):
                        message.flags -= flags
                    else:
                        message.flags = set(flags)
                if ".SILENT" not in mode:
                    self.send(f"* {seq} FETCH (UID {message.uid} FLAGS ({' '.join(sorted(message.flags))}))\r\n")
            self.send(f"{tag} OK STORE completed\r\n")
        elif command in ("CLOSE", "EXPUNGE", "CHECK"):
            self.send(f"{tag} OK {command} completed\r\n")
        else:
            self.send(f"{tag} BAD unknown command {command}\r\n")
        return True

    def send_fetch(self, seq: int, message: StoredMessage, items: str, uid_mode: bool) -> None:
        parts = [f"UID {message.uid}"] if uid_mode or "UID" in items else []
        literal: bytes | None = None
        literal_name = ""
        if "FLAGS" in items.split():
            parts.append(f"FLAGS ({' '.join(sorted(message.flags))})")
        if "RFC822.SIZE" in items:
            parts.append(f"RFC822.SIZE {len(message.data)}")
        if "HEADER" in items:
            literal, literal_name = _header_of(message.data), "BODY[HEADER]"
        elif "BODY.PEEK[]" in items or "BODY[]" in items or re.search(r"\bRFC822\b(?!\.)", items):
            literal, literal_name = message.data, "BODY[]" if "BODY" in items else "RFC822"
            if "PEEK" not in items:
                message.flags.add("\\Seen")
        if literal is None:
            self.send(f"* {seq} FETCH ({' '.join(parts)})\r\n")
            return
        head = f"* {seq} FETCH ({' '.join([*parts, literal_name])} {{{len(literal)}}}\r\n".encode()
        self.wfile.write(head + literal + b")\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ImapStandin:
    def __init__(self, *, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.lock = threading.Lock()
        self.messages: list[StoredMessage] = []
        self.next_uid = 101
        self.failed_logins = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def add_message(self, data: bytes, flags: set[str] | None = None) -> int:
        with self.lock:
            uid = self.next_uid
            self.next_uid += 1
            self.messages.append(StoredMessage(uid, data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
                                               set(flags or ())))
            return uid

    def flags(self, uid: int) -> set[str]:
        with self.lock:
            return next(set(m.flags) for m in self.messages if m.uid == uid)

    def search(self, args: list[str]) -> list[tuple[int, StoredMessage]]:
        with self.lock:
            found = list(enumerate(self.messages, start=1))
        criteria = [a.upper() for a in args if a.upper() != "CHARSET"]
        i = 0
        while i < len(criteria):
            key = criteria[i]
            if key == "UNSEEN":
                found = [(s, m) for s, m in found if "\\Seen" not in m.flags]
            elif key == "SEEN":
                found = [(s, m) for s, m in found if "\\Seen" in m.flags]
            elif key in ("KEYWORD", "UNKEYWORD"):
                flag = args[i + 1]
                wanted = key == "KEYWORD"
                found = [(s, m) for s, m in found if (flag in m.flags) == wanted]
                i += 1
            i += 1
        return found

    def select_set(self, spec: str, uid_mode: bool) -> list[tuple[int, StoredMessage]]:
        with self.lock:
            indexed = list(enumerate(self.messages, start=1))
        wanted: list[tuple[int, StoredMessage]] = []
        for piece in spec.split(","):
            low, _, high = piece.partition(":")
            for seq, message in indexed:
                key = message.uid if uid_mode else seq
                top = 2**63 if high == "*" else int(high or low)
                bottom = 2**63 if low == "*" else int(low)
                if min(bottom, top) <= key <= max(bottom, top):
                    wanted.append((seq, message))
        return wanted

    # --- server lifecycle ---------------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("stand-in not started")
        return self._server.server_address[1]

    def start(self) -> ImapStandin:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ImapStandin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ImapStandin:
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
