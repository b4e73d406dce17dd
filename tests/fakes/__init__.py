"""
Faithful stand-ins for programs that cannot run here (no SGX, no Docker
engine, no Gramine): C{aesm_service}, C{gramine-sgx}, C{docker}, and a
SIGSTRUCT maker that signs the way C{gramine-sgx-sign} does.
"""
