#!/usr/bin/env python3
"""Port the PyPI release of the Autobahn WebSocket testsuite to Python 3.

autobahntestsuite 25.10.1 on PyPI is still Python 2 code. This script ports
the copy installed in a venv, in place, at install time (tests/autobahn/setup.sh
runs it): no code of the suite lives in this repository.

Steps (all on the venv's site-packages):
  1. line endings of the suite's .py files to LF (some ship CRLF);
  2. lib2to3 (python3 -m lib2to3 -w -n), or its PyPI fork fissix where the
     interpreter no longer ships lib2to3 (Python >= 3.13);
  3. the hand edits in EDITS / the regex edits below, each one checked: an
     edit whose text is not found the expected number of times aborts the
     port (a different release of the suite needs this script revisited);
  4. one edit in autobahn 0.10.9 (the pinned release the suite was written
     against): an integer division that became float division on Python 3.

Only fuzzingclient mode (with its reports) is what this port is checked for;
other wstest modes may still have Python 2 leftovers.

Usage: port_py3.py SITE_PACKAGES   (run it with the venv's python)
"""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

SUITE_VERSION = "25.10.1"
AUTOBAHN_VERSION = "0.10.9"
MARKER = ".ringwire-py3-port"

# Helpers added to autobahntestsuite/case/case.py. The cases are written for
# Python 2, where a payload literal like "\xfe" * 125 is a byte string; on
# Python 3 it is text. Rather than rewriting some 300 cases, payloads stay
# text (with Python 2 semantics: one char per octet, so slicing and indexing
# keep working) and become octets at the edges: when sent (FuzzingProtocol's
# send* wrappers) and when compared with what was received (normevents).
CASE_HELPERS = '''

def tobytes(x):
   """py3 port: a payload written as Python 2 'str' (text with one char per
   octet) as the octets it stood for; bytes stay as they are."""
   if isinstance(x, str):
      try:
         return x.encode('latin-1')
      except UnicodeEncodeError:
         return x.encode('utf-8')
   if isinstance(x, (bytearray, memoryview)):
      return bytes(x)
   return x


class py2binascii:
   """py3 port: binascii.b2a_hex as the cases used it on Python 2: takes
   text or octets, gives text."""
   @staticmethod
   def b2a_hex(x):
      import binascii
      return binascii.b2a_hex(tobytes(x)).decode('ascii')
   hexlify = b2a_hex


def normevents(events):
   """py3 port: an event list ("message"/"ping"/"pong" tuples) with every
   payload as octets."""
   out = []
   for e in events:
      if isinstance(e, tuple) and len(e) > 1 and e[0] in ("message", "ping", "pong"):
         out.append((e[0], tobytes(e[1])) + tuple(e[2:]))
      else:
         out.append(e)
   return out
'''

FUZZING_SEND_WRAPPERS = '''   ## py3 port: test cases build payloads as text (Python 2 'str'); the
   ## wire wants octets.
   def sendFrame(self, opcode, payload = b'', *args, **kwargs):
      return super().sendFrame(opcode, tobytes(payload), *args, **kwargs)

   def sendData(self, data, *args, **kwargs):
      return super().sendData(tobytes(data), *args, **kwargs)

   def sendMessage(self, payload, *args, **kwargs):
      return super().sendMessage(tobytes(payload), *args, **kwargs)

   def sendMessageFrame(self, payload, *args, **kwargs):
      return super().sendMessageFrame(tobytes(payload), *args, **kwargs)

   def sendMessageFrameData(self, payload, *args, **kwargs):
      return super().sendMessageFrameData(tobytes(payload), *args, **kwargs)

   def sendPing(self, payload = None):
      return super().sendPing(tobytes(payload))

   def sendPong(self, payload = None):
      return super().sendPong(tobytes(payload))

   def sendCloseFrame(self, code = None, reasonUtf8 = None, isReply = False):
      return super().sendCloseFrame(code, tobytes(reasonUtf8), isReply)


   def executeContinueLater(self, fun, tag):'''

# (file under autobahntestsuite/, old text, new text, expected count, why)
EDITS = [
    # --- case/case.py: the base class of every case
    ("case/case.py", "import pickle\n", "import pickle\n" + CASE_HELPERS, 1,
     "helpers: text payloads -> octets"),
    ("case/case.py",
     "      return pickle.dumps(obj1) == pickle.dumps(obj2)",
     "      # py3 port: pickle output depends on object identity (memo) for\n"
     "      # large bytes objects; compare the event lists structurally.\n"
     "      return normevents(obj1) == normevents(obj2)", 1,
     "compare expected/received events without pickle"),
    ("case/case.py",
     "   def onConnectionLost(self, failedByMe):\n",
     "   def onConnectionLost(self, failedByMe):\n"
     "      # py3 port: expected payloads written as text become octets\n"
     "      for e in self.expected:\n"
     "         self.expected[e] = normevents(self.expected[e])\n", 1,
     "expected events as octets (for the reports too)"),
    # --- case/case10_1_1.py: frame count check
    ("case/case10_1_1.py",
     "frames_expected[0] = len(self.payload) / self.p.autoFragmentSize",
     "frames_expected[0] = len(self.payload) // self.p.autoFragmentSize", 1,
     "integer division (else 10.1.1 always FAILS: 50 != 50.41)"),
    # --- case/case6_x_x.py: UTF-8 validator on octets
    ("case/case6_x_x.py", "from .case import Case\n",
     "from .case import Case, tobytes\n", 1, "import helper"),
    ("case/case6_x_x.py", "res = v.validate(vss[:i])",
     "res = v.validate(tobytes(vss[:i]))", 1,
     "autobahn's Utf8Validator takes octets"),
    # --- case/case9_9_1.py: zope.interface class advice is gone
    ("case/case9_9_1.py", "from zope.interface import implements\n",
     "from zope.interface import implementer\n", 1, "implements -> implementer"),
    ("case/case9_9_1.py",
     "class FrameProducer:\n\n   implements(interfaces.IPushProducer)\n",
     "@implementer(interfaces.IPushProducer)\nclass FrameProducer:\n", 1,
     "implements -> implementer"),
    # --- choosereactor.py: first module wstest imports
    ("choosereactor.py", "import sys, json\n",
     "import sys, json\n\n# py3 port: current txaio needs the framework chosen explicitly\n"
     "import txaio\ntxaio.use_twisted()\n", 1,
     "txaio >= 2.x has no implicit framework"),
    # --- wstest.py
    ("wstest.py", "from . import serializer\n",
     "try:\n   from . import serializer\n"
     "except ImportError:  # py3 port: WAMP serializer mode needs unittest2; not ported\n"
     "   serializer = None\n", 1,
     "serializer mode imports autobahn's WAMP tests (unittest2)"),
    # --- fuzzing.py: the fuzzing client/server protocol and the reports
    ("fuzzing.py", "from .caseset import CaseSet\n",
     "from .caseset import CaseSet\nfrom .case.case import tobytes\n\n\n"
     "def _jsonable(o):\n"
     "   # py3 port: reports may hold octets (close reasons, HTTP data)\n"
     "   if isinstance(o, (bytes, bytearray)):\n"
     "      return bytes(o).decode('utf-8', 'replace')\n"
     "   raise TypeError(repr(o))\n", 1, "JSON reports with octets"),
    ("fuzzing.py",
     '   ellipses = " ..."\n'
     "   if len(data) > maxlen - len(ellipses):\n"
     "      dd = binascii.b2a_hex(data[:maxlen]) + ellipses\n"
     "   else:\n"
     "      dd = binascii.b2a_hex(data)\n",
     '   ellipses = " ..."\n'
     "   data = tobytes(data)\n"
     "   if len(data) > maxlen - len(ellipses):\n"
     "      dd = binascii.b2a_hex(data[:maxlen]).decode('ascii') + ellipses\n"
     "   else:\n"
     "      dd = binascii.b2a_hex(data).decode('ascii')\n", 1,
     "binLogData: hex as text"),
    ("fuzzing.py",
     '   ellipses = " ..."\n   try:\n',
     '   ellipses = b" ..."\n   data = tobytes(data)\n   try:\n', 1,
     "asciiLogData: works on octets"),
    ("fuzzing.py", "         p = ''.join(payload)", "         p = b''.join(payload)", 1,
     "received frame payload chunks are octets"),
    ("fuzzing.py",
     "binascii.b2a_hex(frameHeader.mask) if frameHeader.mask else None",
     "binascii.b2a_hex(frameHeader.mask).decode('ascii') if frameHeader.mask else None", 2,
     "wire log: masks as text"),
    # The wire log keeps masks as hex text already (the edit above); only frames a
    # client sent are masked, so this shows in fuzzingserver mode (ours as the client).
    ("fuzzing.py", "mmask = binascii.b2a_hex(t[6])",
     "mmask = t[6] if isinstance(t[6], str) else binascii.b2a_hex(t[6]).decode('ascii')", 1,
     "HTML report: mask as text"),
    ("fuzzing.py",
     '% (c[0], case[c[0]], c[1])).encode("utf-8"))',
     "% (c[0], case[c[0]], c[1])))", 1,
     "HTML report is a text file: no encode"),
    ("fuzzing.py",
     "f.write(json.dumps(case, sort_keys = True, indent = 3, separators = (',', ': ')))",
     "f.write(json.dumps(case, sort_keys = True, indent = 3, separators = (',', ': '), default = _jsonable))", 1,
     "JSON case reports with octets"),
    ("fuzzing.py", "   def executeContinueLater(self, fun, tag):", FUZZING_SEND_WRAPPERS, 1,
     "send* wrappers: text payloads -> octets"),
]

# autobahn 0.10.9 (site-packages/autobahn/...)
AUTOBAHN_EDITS = [
    ("websocket/protocol.py",
     "range(payload_len / len(payload))",
     "range(payload_len // len(payload))", 1,
     "sendFrame(payload_len=...) (groups 1, 9) needs an int"),
]


def die(msg):
    sys.stderr.write("port_py3: %s\n" % msg)
    sys.exit(1)


def read(path):
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def write(path, text):
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def apply_edits(base, edits):
    for rel, old, new, count, why in edits:
        path = os.path.join(base, rel)
        text = read(path)
        n = text.count(old)
        if n != count:
            die("%s: expected %d match(es) of %r, found %d (%s)" % (rel, count, old[:60], n, why))
        write(path, text.replace(old, new))


def regex_edits(suite):
    for path in sorted(glob.glob(os.path.join(suite, "case", "case*.py"))):
        text = read(path)
        new = text
        # Python 2 old-style class Case could follow object in bases; on
        # Python 3 that is an MRO error.
        new = new.replace("(object, Case, ),", "(Case, ),")
        # b2a_hex on text payloads (used at import time in descriptions)
        new = re.sub(r"(?m)^import binascii$", "from .case import py2binascii as binascii", new)
        # Literals with raw non-ASCII chars (6.2.x): Python 2 saw their UTF-8
        # octets; keep one char per octet like every other payload.
        new = re.sub(r'"([^"\n]*[^\x00-\x7f][^"\n]*)"',
                     lambda m: '"%s".encode("utf-8").decode("latin-1")' % m.group(1), new)
        if new != text:
            write(path, new)


def run_2to3(suite):
    from importlib.util import find_spec
    if find_spec("lib2to3"):
        mod = "lib2to3"
    elif find_spec("fissix"):
        mod = "fissix"
    else:
        die("neither lib2to3 (Python <= 3.12) nor fissix (pip install fissix) is importable")
    cmd = [sys.executable, "-W", "ignore", "-c",
           "import sys; from %s.main import main; sys.exit(main('%s.fixes'))" % (mod, mod),
           "-w", "-n", "--no-diffs", suite]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die("%s failed:\n%s" % (mod, r.stderr[-4000:]))


def dist_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def script_hash():
    return hashlib.sha256(read(os.path.abspath(__file__)).encode()).hexdigest()


def main():
    if len(sys.argv) != 2:
        die("usage: port_py3.py SITE_PACKAGES")
    site = sys.argv[1]
    suite = os.path.join(site, "autobahntestsuite")
    ab = os.path.join(site, "autobahn")
    if dist_version("autobahntestsuite") != SUITE_VERSION:
        die("autobahntestsuite %s installed, this port is for %s"
            % (dist_version("autobahntestsuite"), SUITE_VERSION))
    if dist_version("autobahn") != AUTOBAHN_VERSION:
        die("autobahn %s installed, this port is for %s" % (dist_version("autobahn"), AUTOBAHN_VERSION))
    marker = os.path.join(suite, MARKER)
    if os.path.exists(marker):
        if read(marker).strip() == script_hash():
            print("port_py3: already ported")
            return
        die("%s was ported by another version of this script: reinstall "
            "autobahntestsuite and autobahn first (setup.sh does)" % suite)

    for d in glob.glob(os.path.join(suite, "**", "__pycache__"), recursive=True):
        shutil.rmtree(d)
    for path in glob.glob(os.path.join(suite, "**", "*.py"), recursive=True):
        text = read(path)
        if "\r\n" in text:
            write(path, text.replace("\r\n", "\n"))
    run_2to3(suite)
    apply_edits(suite, EDITS)
    regex_edits(suite)
    apply_edits(ab, AUTOBAHN_EDITS)
    write(marker, script_hash() + "\n")
    print("port_py3: ported %s" % suite)


if __name__ == "__main__":
    main()
