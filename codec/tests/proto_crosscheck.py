"""Independent Protobuf check for ringwire-codec (run by tests/cross_check.rs).

Builds the descriptors of proto/envelope.proto's Envelope, with field 4 typed
as the test payload `Reading`, at run time (no protoc, nothing compiled), then:

  decode HEX   parse HEX as an Envelope and print its fields, one per line,
               as `name<TAB>value` (strings as UTF-8 hex, so any text is safe)
  encode       print the hex of an Envelope built here, for Rust to decode

Needs the `protobuf` package, 4.21 or later: `pip install protobuf`, or on Debian and
Ubuntu `apt-get install python3-protobuf` (.ci/setup.sh installs it).
"""

import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def build_classes():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="ringwire_crosscheck.proto", package="ringwire.test", syntax="proto3"
    )
    level = fdp.enum_type.add(name="Level")
    for i, n in enumerate(["UNKNOWN", "LOW", "HIGH"]):
        level.value.add(name="LEVEL_" + n, number=i)

    def field(msg, name, number, ftype, label=F.LABEL_OPTIONAL, type_name=None):
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = type_name

    inner = fdp.message_type.add(name="Inner")
    field(inner, "label", 1, F.TYPE_STRING)
    field(inner, "delta", 2, F.TYPE_SINT64)

    reading = fdp.message_type.add(name="Reading")
    field(reading, "name", 1, F.TYPE_STRING)
    field(reading, "count", 2, F.TYPE_UINT64)
    field(reading, "value", 3, F.TYPE_DOUBLE)
    field(reading, "ok", 4, F.TYPE_BOOL)
    field(reading, "level", 5, F.TYPE_ENUM, type_name=".ringwire.test.Level")
    field(reading, "inner", 6, F.TYPE_MESSAGE, type_name=".ringwire.test.Inner")
    field(reading, "tags", 7, F.TYPE_STRING, label=F.LABEL_REPEATED)

    env = fdp.message_type.add(name="Envelope")
    field(env, "id", 1, F.TYPE_BYTES)
    field(env, "kind", 2, F.TYPE_UINT32)
    field(env, "timestamp_us", 3, F.TYPE_FIXED64)
    field(env, "payload", 4, F.TYPE_MESSAGE, type_name=".ringwire.test.Reading")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    desc = pool.FindMessageTypeByName("ringwire.test.Envelope")
    # GetMessageClass is protobuf >= 4.22; older releases (Debian 12's python3-protobuf,
    # 4.21) have only the factory's GetPrototype, which 5.x removed.
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def s(text):
    return text.encode("utf-8").hex()


def decode(hexstr):
    Envelope = build_classes()
    e = Envelope()
    e.ParseFromString(bytes.fromhex(hexstr))
    p = e.payload
    out = [
        ("id", e.id.hex()),
        ("kind", e.kind),
        ("timestamp_us", e.timestamp_us),
        ("payload.name", s(p.name)),
        ("payload.count", p.count),
        ("payload.value", repr(p.value)),
        ("payload.ok", str(p.ok).lower()),
        ("payload.level", p.level),
        ("payload.has_inner", str(p.HasField("inner")).lower()),
        ("payload.inner.label", s(p.inner.label)),
        ("payload.inner.delta", p.inner.delta),
        ("payload.tags", ",".join(s(t) for t in p.tags)),
    ]
    for k, v in out:
        print(f"{k}\t{v}")


def encode():
    Envelope = build_classes()
    e = Envelope()
    e.id = bytes(range(0x10, 0x20))
    e.kind = 7
    e.timestamp_us = 1_764_115_200_000_001
    e.payload.name = "from python ✓"
    e.payload.count = 3
    e.payload.value = 0.25
    e.payload.ok = True
    e.payload.level = 1
    e.payload.inner.label = "py"
    e.payload.inner.delta = -9
    e.payload.tags.extend(["x", "yz"])
    print(e.SerializeToString().hex())


if __name__ == "__main__":
    if sys.argv[1] == "decode":
        decode(sys.argv[2])
    else:
        encode()
