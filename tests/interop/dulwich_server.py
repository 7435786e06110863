"""A dulwich git server for kalandra's interoperability matrix (tests/it/interop/dulwich.rs).

    python dulwich_server.py git|http ROOT

serves every repository under ROOT, read and write, on 127.0.0.1 at a free port, over git://
(dulwich.server.TCPGitServer) or smart HTTP (dulwich.web), and prints one line once it listens:

    listening PORT dulwich VERSION

The stock `dulwich daemon` cannot serve here: 1.2 rejects `/name.git` request paths and 0.21
crashes on the bytes path. This backend maps the request path under ROOT instead, and works with
dulwich 0.21 (Debian's python3-dulwich) and 1.2 (PyPI) alike.
"""

import os
import sys

import dulwich
from dulwich.errors import NotGitRepository
from dulwich.repo import Repo
from dulwich.server import Backend


class RootBackend(Backend):
    """Opens `<root>/<request path>`, and nothing outside the root."""

    def __init__(self, root):
        self.root = os.path.realpath(root)

    def open_repository(self, path):
        if isinstance(path, bytes):
            path = path.decode("utf-8")
        full = os.path.realpath(os.path.join(self.root, path.lstrip("/")))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise NotGitRepository("%s is outside the served root" % path)
        return Repo(full)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("git", "http"):
        sys.exit("usage: dulwich_server.py git|http ROOT")
    kind, root = sys.argv[1], sys.argv[2]
    backend = RootBackend(root)
    if kind == "git":
        from dulwich.server import TCPGitServer

        server = TCPGitServer(backend, "127.0.0.1", 0)
    else:
        from dulwich.web import (
            WSGIRequestHandlerLogger,
            WSGIServerLogger,
            make_server,
            make_wsgi_chain,
        )

        server = make_server(
            "127.0.0.1",
            0,
            make_wsgi_chain(backend),
            handler_class=WSGIRequestHandlerLogger,
            server_class=WSGIServerLogger,
        )
    version = ".".join(str(part) for part in dulwich.__version__)
    print("listening %d dulwich %s" % (server.server_address[1], version), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
