"""
A minimal stand-in for the attestd daemon, used by the fake C{gramine-sgx}
only while the attestd twistd plugin does not exist: it listens on the given
loopback port, logs like twistd does when a stop signal arrives, and then
dies of that same signal, as C{twistd -n} does after a clean stop.
"""

import os
import signal
import socket
import sys


def stop(signum: int, frame: object) -> None:
    name = signal.Signals(signum).name
    sys.stdout.write(f"Received {name}, shutting down.\n")
    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def main() -> int:
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = socket.socket()
    server.bind(("127.0.0.1", int(sys.argv[1])))
    server.listen(16)
    sys.stdout.write(f"stand-in daemon listening on {sys.argv[1]}\n")
    sys.stdout.flush()
    while True:
        connection, _ = server.accept()
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
