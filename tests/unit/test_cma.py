"""net/cma.py: process_vm_readv copies into new bytes objects, and the probe that
decides whether a connection may use them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from trioflow.net import cma

pytestmark = pytest.mark.skipif(not cma.available(), reason="not Linux/CPython")


def test_new_bytes_is_filled_through_its_view_and_is_an_ordinary_bytes():
    data, view = cma.new_bytes(5)
    view[:] = b"hello"
    del view
    assert type(data) is bytes and data == b"hello" and hash(data) == hash(b"hello")
    empty, _ = cma.new_bytes(0)
    assert empty == b""


def test_read_copies_from_a_live_process_or_says_why_not():
    if not cma.probe(*cma.shown(), cma.NONCE):
        pytest.skip("process_vm_readv is not allowed here")
    payload = os.urandom(3_000_000)
    assert cma.read(os.getpid(), cma.address_of(payload), len(payload)) == payload
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # (reaped: its pid names no process now)
    with pytest.raises(OSError):
        cma.read(gone.pid, cma.address_of(payload), 16)


def test_the_probe_refuses_what_does_not_show_the_nonce():
    pid, address = cma.shown()
    assert cma.probe(pid, address, cma.NONCE) in (True, False)  # (allowed or not here)
    assert not cma.probe(pid, address, b"x" * len(cma.NONCE))  # not what is there
    assert not cma.probe(pid, address, cma.NONCE[:8])  # wrong length
    assert not cma.probe("1", address, cma.NONCE)  # not an int
    assert not cma.probe(pid, 8, cma.NONCE)  # an address not mapped: EFAULT, False
