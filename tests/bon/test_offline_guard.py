import socket

import pytest

from conftest import NetworkAccessError


def test_connecting_to_the_internet_fails_loudly():
    with pytest.raises(NetworkAccessError, match="tried to"):
        socket.create_connection(("huggingface.co", 443), timeout=1)


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()
