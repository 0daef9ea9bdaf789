# Starts one test server on 127.0.0.1 on a free port, prints the port on a line of its own,
# and exits when its standard input closes (the test process that started it has ended).
# Usage: python launcher.py s3
#        python launcher.py webdav ROOT USER PASSWORD
import os
import sys
import threading


def exit_when_stdin_closes():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)


def main():
    kind = sys.argv[1]
    if kind == "s3":
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", 0, DomainDispatcherApplication(create_backend_app), threaded=True)
        port = server.server_address[1]
        serve = server.serve_forever
    elif kind == "webdav":
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        root, user, password = sys.argv[2], sys.argv[3], sys.argv[4]
        config = {
            "host": "127.0.0.1",
            "port": 0,
            "provider_mapping": {"/": root},
            "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 1,
            "logging": {"enable": False},
        }
        server = wsgi.Server(("127.0.0.1", 0), WsgiDAVApp(config), numthreads=16)
        server.prepare()
        port = server.bind_addr[1]
        serve = server.serve
    else:
        raise SystemExit(f"unknown server kind {kind!r}")
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    print(port, flush=True)
    serve()


main()
