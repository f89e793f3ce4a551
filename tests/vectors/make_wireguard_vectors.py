#!/usr/bin/env python3
"""Known-answer vectors for Tunnel's crypto, produced by implementations independent of ours.

- BLAKE2s / keyed BLAKE2s-128 / HMAC-BLAKE2s / HKDF: Python's hashlib.blake2s and hmac (RFC 2104),
  HKDF written here from RFC 5869.
- A full Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake with WireGuard's prologue: the PyPI package
  `noiseprotocol`, with fixed static and ephemeral keys and a fixed TAI64N timestamp.

Run: .venv/bin/python tests/vectors/make_wireguard_vectors.py  (make vectors). Output is checked in under
Tests/TunnelTests/Fixtures and read by the Swift tests.
"""
import hashlib
import hmac
import json
import os

from noise.connection import Keypair, NoiseConnection

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "TunnelTests", "Fixtures")


def fixed(label, n=32):
    return hashlib.sha256(label.encode()).digest()[:n]


def hkdf(chaining_key, data, count):
    prk = hmac.new(chaining_key, data, hashlib.blake2s).digest()
    out, previous = [], b""
    for i in range(1, count + 1):
        previous = hmac.new(prk, previous + bytes([i]), hashlib.blake2s).digest()
        out.append(previous)
    return out


def blake2s_vectors():
    cases = []
    for length in (0, 1, 3, 63, 64, 65, 200):
        data = bytes((i * 7 + 3) & 0xFF for i in range(length))
        key = fixed(f"key{length}")
        cases.append({
            "input": data.hex(),
            "key": key.hex(),
            "hash": hashlib.blake2s(data).hexdigest(),
            "mac": hashlib.blake2s(data, key=key, digest_size=16).hexdigest(),
            "hmac": hmac.new(key, data, hashlib.blake2s).hexdigest(),
            "kdf3": [k.hex() for k in hkdf(key, data, 3)],
        })
    return cases


def handshake_vector():
    prologue = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
    name = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
    i_static, r_static = fixed("initiator static"), fixed("responder static")
    i_ephemeral, r_ephemeral = fixed("initiator ephemeral"), fixed("responder ephemeral")
    psk = bytes(32)
    timestamp = bytes.fromhex("400000006553f100" + "0a000000")

    responder = NoiseConnection.from_name(name)
    responder.set_as_responder()
    responder.set_keypair_from_private_bytes(Keypair.STATIC, r_static)
    responder.set_keypair_from_private_bytes(Keypair.EPHEMERAL, r_ephemeral)
    responder.set_psks(psk=psk)
    responder.set_prologue(prologue)
    r_public = responder.noise_protocol.keypairs["s"].public_bytes

    initiator = NoiseConnection.from_name(name)
    initiator.set_as_initiator()
    initiator.set_keypair_from_private_bytes(Keypair.STATIC, i_static)
    initiator.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, r_public)
    initiator.set_keypair_from_private_bytes(Keypair.EPHEMERAL, i_ephemeral)
    initiator.set_psks(psk=psk)
    initiator.set_prologue(prologue)

    initiator.start_handshake()
    responder.start_handshake()
    message1 = initiator.write_message(timestamp)
    assert responder.read_message(message1) == timestamp
    message2 = responder.write_message(b"")
    initiator.read_message(message2)
    assert initiator.handshake_finished and responder.handshake_finished
    return {
        "initiator_static_private": i_static.hex(),
        "responder_static_private": r_static.hex(),
        "initiator_ephemeral_private": i_ephemeral.hex(),
        "responder_ephemeral_private": r_ephemeral.hex(),
        "timestamp": timestamp.hex(),
        # WireGuard's initiation bytes 8..<116 and response bytes 12..<60 are exactly Noise's messages.
        "noise_message1": message1.hex(),
        "noise_message2": message2.hex(),
        # First transport message each way (counter 0, no associated data), as WireGuard seals them.
        "initiator_transport0": initiator.encrypt(b"ping over noise").hex(),
        "responder_transport0": responder.encrypt(b"pong over noise").hex(),
    }


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "blake2s.json"), "w") as f:
        json.dump(blake2s_vectors(), f, indent=1)
    with open(os.path.join(OUT, "noise-ikpsk2.json"), "w") as f:
        json.dump(handshake_vector(), f, indent=1)
    print("wrote", OUT)
