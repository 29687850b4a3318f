"""The third-party Python client `etcd3` (PyPI) against one member: put, get, watch and delete, over TLS
when ETCD_CA is set. With ETCD_USER it first authenticates with ETCD_PASSWORD, and a wrong password and
a request without a user must then be refused (the latter with ETCD_ANONYMOUS_ERROR). etcd3 sends its
token as call credentials, which grpcio only sends over TLS, so a user needs ETCD_CA. Prints "ok" at
the end."""

import os
import signal
import sys

import etcd3
import grpc

# A hung call must fail the test, not stall it.
signal.alarm(60)

host = os.environ["ETCD_HOST"]
port = int(os.environ["ETCD_PORT"])
tls = {
    "ca_cert": os.environ.get("ETCD_CA"),
    "cert_cert": os.environ.get("ETCD_CERT"),
    "cert_key": os.environ.get("ETCD_KEY"),
}
user = os.environ.get("ETCD_USER")
password = os.environ.get("ETCD_PASSWORD")
auth = {"user": user, "password": password} if user else {}


def connect(**auth):
    return etcd3.client(host=host, port=port, timeout=10, **tls, **auth)


def fail(what):
    print(what, file=sys.stderr)
    sys.exit(1)


client = connect(**auth)
client.put("/py/key", "value-1")
value, meta = client.get("/py/key")
if value != b"value-1" or meta.key != b"/py/key":
    fail(f"get returned {value!r} for {meta.key!r}")

events, cancel = client.watch("/py/key")
client.put("/py/key", "value-2")
event = next(events)
if not isinstance(event, etcd3.events.PutEvent) or event.value != b"value-2":
    fail(f"watch saw {event!r}")
client.delete("/py/key")
event = next(events)
if not isinstance(event, etcd3.events.DeleteEvent) or event.key != b"/py/key":
    fail(f"watch saw {event!r} instead of the delete")
cancel()
if client.get("/py/key")[0] is not None:
    fail("the key survived its delete")

if not user:
    print("ok")
    sys.exit(0)

try:
    connect(user=user, password="wrong-" + password)
    fail("a wrong password was accepted")
except grpc.RpcError as e:
    if "authentication failed" not in e.details():
        fail(f"a wrong password failed with {e.code()}: {e.details()}")

anonymous = connect()
try:
    anonymous.put("/py/anonymous", "x")
    fail("a put without a user was accepted")
except grpc.RpcError as e:
    if e.details() != os.environ["ETCD_ANONYMOUS_ERROR"]:
        fail(f"a put without a user failed with {e.code()}: {e.details()}")
anonymous.close()
print("ok")
