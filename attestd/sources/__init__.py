"""
Attestation sources: where the daemon's RA-TLS certificate comes from.
"""
