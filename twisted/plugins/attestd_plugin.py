"""
The C{attestd} twistd plugin (C{twistd -n attestd --help}).

This module only names L{attestd.tap}; twistd imports that module when
the plugin is used, so scanning plugins never loads the server.
"""

from twisted.application.service import ServiceMaker

attestd = ServiceMaker(
    "attestd",
    "attestd.tap",
    "HTTPS with a Gramine RA-TLS certificate, from inside an SGX enclave",
    "attestd",
)
