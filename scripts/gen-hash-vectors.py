#!/usr/bin/python3
"""Generate key-placement test vectors from the real reference clients.

Writes test/fixtures/hashing/{ketama,rendezvous,modula}.json, which test/unit/hashing.test.ts
checks lib/cluster/hashing against. Run from anywhere with the Debian interpreter (the client
libraries are Debian packages: python3-pylibmc, python3-pymemcache, python3-memcache, and the
memcached server):

    /usr/bin/python3 scripts/gen-hash-vectors.py

- ketama: pylibmc (libmemcached) with behaviors {"ketama_weighted": True} cannot be asked where a
  key goes, so this script starts temporary memcached servers on 127.0.0.2-127.0.0.6 / [::1] /
  unix sockets (never 127.0.0.1), stores every key through pylibmc, then asks each server
  directly (pymemcache, one client per server) which keys it holds. The servers are killed after.
- rendezvous: pymemcache's HashClient (no connection needed) is asked through its own
  _get_client(), with str keys and allow_unicode_keys=True. Dead servers go through its own
  remove_server() path.
- modula: python-memcached's Client._get_server() with its own bucket building and hash; the
  servers' connect() is replaced by a stub that reports the server alive or dead, which is the
  only thing _get_server() asks of them.

Fixture format (all files):
    {"generator", "reference": {library versions}, "notes": [...], "keys": [...],
     "cases": [{"name", "servers": [{"id", "host", "port", "weight"}], "dead": [indices],
                "keys"?: [...] (overrides the shared keys), "expected": [server index or -1 per key],
                "sameAs"?: {"case": name, "dead": [indices of that case's servers]}}]}
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import memcache
import pylibmc
import pymemcache
from pymemcache.client.base import Client as PymemcacheClient
from pymemcache.client.base import normalize_server_spec
from pymemcache.client.hash import HashClient
from pymemcache.client.murmur3 import murmur3_32

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "hashing")
# Fixed path: socket paths are part of the hashed server names, so they must not vary.
SOCKET_DIR = "/tmp/nestjs-memcached-hash-vectors"
NUM_KEYS = 2000
MAX_KEY_BYTES = 250


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))  # no space, no DEL
NON_ASCII = (
    "éèêëàâäçñöüßøåæœÿÉÀÇÑÖÜ"  # Latin-1 / Latin Extended (2 bytes)
    "ĀăĆčĐęĞıŁńŐřŚşŢůŹž"  # Latin Extended-A
    "αβγδεζηθλμπσφψωΩΔΣ"  # Greek
    "абвгдежзийклмнопрстуфхцчшщыэюяЖЩЯ"  # Cyrillic
    "אבגדהוזחטיכלמנסעפצקרשת"  # Hebrew
    "日本語中文字漢東京大阪北京上海한국어"  # CJK (3 bytes)
    "€₹™∑∞≠≤≥←→⇒★☃♥♫✓"  # symbols (3 bytes)
)
ASTRAL = "😀😎🚀🎉🐍🦄🍕🌍𝄞𝔘𠜎𠜱"  # 4-byte UTF-8, surrogate pairs in JS


def utf8_len(s):
    return len(s.encode("utf-8"))


def gen_keys():
    rng = random.Random(0x5EED)
    fixed = [
        "a", "Z", "0", "-", "_", ":", "key", "foo", "bar", "hello", "user:1", "user:2",
        "session:abc", "x" * MAX_KEY_BYTES, "é", "é" * 125, "日本", "€", "😀", "😀" * 62,
        "a-b-c", "127.0.0.2:21211-0", "::1", "[]", "{}", "%s", "\\", "'\"", "key~!@#$%^&*()",
    ]
    keys = []
    seen = set()

    def add(k):
        assert 0 < utf8_len(k) <= MAX_KEY_BYTES, k
        if k not in seen:
            seen.add(k)
            keys.append(k)

    for k in fixed:
        add(k)
    prefixes = ["user", "session", "cart", "product", "feed", "cfg", "rate", "lock"]
    while len(keys) < NUM_KEYS:
        kind = rng.random()
        if kind < 0.15:  # short alphanumeric
            k = "".join(rng.choice(ALNUM) for _ in range(rng.randint(1, 12)))
        elif kind < 0.35:  # typical structured keys
            k = "%s:%d:%s" % (
                rng.choice(prefixes),
                rng.randint(0, 10**7),
                "".join(rng.choice(ALNUM) for _ in range(rng.randint(0, 8))),
            )
        elif kind < 0.50:  # punctuation
            k = "".join(rng.choice(PRINTABLE) for _ in range(rng.randint(1, 40)))
        elif kind < 0.62:  # long ASCII, up to 250 bytes
            k = "".join(rng.choice(PRINTABLE) for _ in range(rng.randint(100, MAX_KEY_BYTES)))
        elif kind < 0.85:  # non-ASCII mixed with ASCII
            pool = NON_ASCII + ALNUM + ":_-." + ASTRAL
            k = "".join(rng.choice(pool) for _ in range(rng.randint(1, 40)))
        elif kind < 0.92:  # astral-heavy
            pool = ASTRAL + NON_ASCII[:20] + "ab"
            k = "".join(rng.choice(pool) for _ in range(rng.randint(1, 30)))
        else:  # long non-ASCII, filled up to (at most) 250 UTF-8 bytes
            target = rng.randint(120, MAX_KEY_BYTES)
            k = ""
            while True:
                ch = rng.choice(NON_ASCII + ASTRAL + ALNUM)
                if utf8_len(k + ch) > target:
                    break
                k += ch
        if utf8_len(k) <= MAX_KEY_BYTES:
            add(k)
    return keys


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


def node(host, port, weight=1):
    """A HashNode as the TypeScript side sees it."""
    if port == 0:
        return {"id": host, "host": host, "port": 0, "weight": weight}
    sid = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    return {"id": sid, "host": host, "port": port, "weight": weight}


def tcp_list(spec):
    """spec: list of (host, port[, weight])."""
    return [node(*s) for s in spec]


def unix_path(name):
    return os.path.join(SOCKET_DIR, name)


EQUAL3 = tcp_list([("127.0.0.2", 21211), ("127.0.0.3", 21212), ("127.0.0.4", 21213)])
EQUAL4 = EQUAL3 + tcp_list([("127.0.0.5", 21214)])
WEIGHTED123 = tcp_list([("127.0.0.2", 21221, 1), ("127.0.0.3", 21222, 2), ("127.0.0.4", 21223, 3)])
FIVE = tcp_list(
    [
        ("127.0.0.2", 21231),
        ("127.0.0.3", 21232),
        ("127.0.0.4", 21233),
        ("127.0.0.5", 21234),
        ("127.0.0.6", 21235),
    ]
)
PORT11211 = tcp_list([("127.0.0.2", 11211), ("127.0.0.3", 11211), ("127.0.0.4", 11211)])
MIXED11211 = tcp_list([("127.0.0.2", 11211, 2), ("127.0.0.3", 21241, 1), ("127.0.0.4", 11211, 1)])
# Weight 1 of a total of 25 on 5 servers: float arithmetic gives 28 points, exact arithmetic 32.
FLOAT_WEIGHTS = tcp_list(
    [
        ("127.0.0.2", 21251, 1),
        ("127.0.0.3", 21252, 1),
        ("127.0.0.4", 21253, 3),
        ("127.0.0.5", 21254, 8),
        ("127.0.0.6", 21255, 12),
    ]
)
# 25 equal weights: float arithmetic gives 156 points per server instead of 160.
EQUAL25 = tcp_list([("127.0.0.%d" % (2 + i % 5), 21301 + i) for i in range(25)])
IPV6 = tcp_list([("::1", 21261), ("::1", 21262), ("::1", 21263)])
UNIX3 = [node(unix_path(n), 0) for n in ("mc-a.sock", "mc-b.sock", "mc-c.sock")]
WEIGHTED_MODULA = tcp_list(
    [("127.0.0.2", 21271, 3), ("127.0.0.3", 21272, 1), ("127.0.0.4", 21273, 2), ("127.0.0.5", 21274, 5)]
)


def without(servers, dead):
    return [s for i, s in enumerate(servers) if i not in dead]


# --------------------------------------------------------------------------------------------
# Temporary memcached servers (ketama)
# --------------------------------------------------------------------------------------------


class Servers:
    """Starts one memcached per node; kills them on exit. Never touches anything else."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.procs = []

    def __enter__(self):
        for n in self.nodes:
            assert not (n["port"] == 11211 and n["host"] in ("127.0.0.1", "localhost", "::1"))
            args = ["memcached", "-m", "16", "-c", "64", "-U", "0"]
            if os.geteuid() == 0:
                args += ["-u", "memcache"]
            if n["port"] == 0:
                args += ["-s", n["host"], "-a", "0777"]
            else:
                args += ["-l", n["host"], "-p", str(n["port"])]
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        for n, p in zip(self.nodes, self.procs):
            self._wait_ready(n, p)
        return self

    def _wait_ready(self, n, proc):
        deadline = time.time() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError("memcached for %s exited with %s" % (n["id"], proc.returncode))
            try:
                if n["port"] == 0:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(n["host"])
                else:
                    s = socket.create_connection((n["host"], n["port"]), timeout=1)
                s.sendall(b"version\r\n")
                if s.recv(64).startswith(b"VERSION"):
                    s.close()
                    return
                s.close()
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("memcached for %s did not start" % n["id"])
            time.sleep(0.05)

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def pylibmc_spec(n):
    if n["port"] == 0:
        assert n["weight"] == 1, "pylibmc string specs carry no weight for unix sockets"
        return n["host"]
    host = "[%s]" % n["host"] if ":" in n["host"] else n["host"]
    return "%s:%d:%d" % (host, n["port"], n["weight"])


def single_client(n):
    server = n["host"] if n["port"] == 0 else (n["host"], n["port"])
    return PymemcacheClient(server, allow_unicode_keys=True, connect_timeout=5, timeout=10)


def ketama_placement(nodes, keys):
    """Store every key through pylibmc, then find which server holds it."""
    with Servers(nodes):
        mc = pylibmc.Client([pylibmc_spec(n) for n in nodes], behaviors={"ketama_weighted": True})
        b = mc.behaviors
        assert b["distribution"] == "consistent weighted", b
        assert b["hash"] == "md5" and b["ketama_weighted"] == 1, b
        for k in keys:
            if not mc.set(k.encode("utf-8"), b"1"):
                raise RuntimeError("pylibmc set failed for %r" % k)
        holder = {}
        for i, n in enumerate(nodes):
            c = single_client(n)
            encoded = [k.encode("utf-8") for k in keys]
            for start in range(0, len(encoded), 100):
                for found in c.get_many(encoded[start : start + 100]):
                    k = found.decode("utf-8")
                    if k in holder:
                        raise RuntimeError("key %r on two servers" % k)
                    holder[k] = i
            c.close()
        mc.disconnect_all()
    missing = [k for k in keys if k not in holder]
    if missing:
        raise RuntimeError("%d keys not found on any server, e.g. %r" % (len(missing), missing[0]))
    return [holder[k] for k in keys]


def gen_ketama(keys):
    cases = []

    def case(name, nodes, same_as=None):
        print("ketama:", name, file=sys.stderr)
        c = {"name": name, "servers": nodes, "dead": [], "expected": ketama_placement(nodes, keys)}
        if same_as:
            c["sameAs"] = {"case": same_as[0], "dead": same_as[1]}
        cases.append(c)

    case("equal3", EQUAL3)
    case("equal3-without-1", without(EQUAL3, [1]), ("equal3", [1]))
    case("equal4", EQUAL4)
    case("weighted123", WEIGHTED123)
    case("weighted123-without-2", without(WEIGHTED123, [2]), ("weighted123", [2]))
    case("five", FIVE)
    case("port11211", PORT11211)
    case("mixed11211-weighted", MIXED11211)
    case("float-weights", FLOAT_WEIGHTS)
    case("equal25", EQUAL25)
    case("ipv6", IPV6)
    os.makedirs(SOCKET_DIR, exist_ok=True)
    os.chmod(SOCKET_DIR, 0o777)
    try:
        case("unix3", UNIX3)
    finally:
        shutil.rmtree(SOCKET_DIR, ignore_errors=True)
    return cases


# --------------------------------------------------------------------------------------------
# Rendezvous (pymemcache HashClient)
# --------------------------------------------------------------------------------------------


def hashclient_server(n):
    """Server spec as a HashClient user would write it (host, port) / path."""
    return normalize_server_spec(n["host"] if n["port"] == 0 else (n["host"], n["port"]))


def rendezvous_placement(nodes, keys, dead=()):
    specs = [hashclient_server(n) for n in nodes]
    hc = HashClient(specs, allow_unicode_keys=True)
    for i in dead:
        # HashClient.remove_server() expects the server to be in _failed_clients, as it is after
        # retry_attempts failures.
        hc._failed_clients[specs[i]] = {"attempts": hc.retry_attempts, "failed_time": time.time()}
        hc.remove_server(specs[i])
    out = []
    for k in keys:
        client = hc._get_client(k)
        out.append(-1 if client is None else specs.index(client.server))
    return out


def find_tie():
    """Two node names whose scores for one key are equal (birthday search over node names)."""
    key = "tie"
    seen = {}
    for a in range(256):
        for b in range(256):
            for port in (11211, 11212, 11213, 11214):
                name = "10.%d.%d.1:%d" % (a, b, port)
                score = murmur3_32("%s-%s" % (name, key))
                if score in seen:
                    return key, seen[score], name, score
                seen[score] = name
    raise RuntimeError("no tie found")


def gen_rendezvous(keys):
    cases = []

    def case(name, nodes, dead=(), case_keys=None):
        print("rendezvous:", name, file=sys.stderr)
        ks = keys if case_keys is None else case_keys
        c = {"name": name, "servers": nodes, "dead": list(dead)}
        if case_keys is not None:
            c["keys"] = case_keys
        c["expected"] = rendezvous_placement(nodes, ks, dead)
        cases.append(c)

    case("equal3", EQUAL3)
    case("equal3-dead-1", EQUAL3, [1])
    case("weighted123-weights-ignored", WEIGHTED123)
    case("five", FIVE)
    case("five-dead-0-3", FIVE, [0, 3])
    case("port11211", PORT11211)
    case("ipv6", IPV6)
    case("unix3", UNIX3)

    key, name_a, name_b, score = find_tie()
    print("rendezvous: tie %r %r %r score %d" % (key, name_a, name_b, score), file=sys.stderr)

    def parse(name):
        host, port = name.rsplit(":", 1)
        return node(host, int(port))

    low, high = sorted([name_a, name_b])
    other = node("10.255.255.255", 11211)
    case("tie-low-first", [parse(low), parse(high)], case_keys=[key])
    case("tie-high-first", [parse(high), parse(low)], case_keys=[key])
    case("tie-with-third", [parse(low), other, parse(high)], case_keys=[key])
    case("tie-high-dead", [parse(low), parse(high)], [1], case_keys=[key])
    return cases


# --------------------------------------------------------------------------------------------
# Modula (python-memcached)
# --------------------------------------------------------------------------------------------


def modula_placement(nodes, keys, dead=()):
    mc = memcache.Client([("%s:%d" % (n["host"], n["port"]), n["weight"]) for n in nodes])
    for i, server in enumerate(mc.servers):
        # _get_server() only asks server.connect(); answer it without a network.
        server.connect = (lambda alive: lambda: alive)(i not in dead)
    out = []
    for k in keys:
        kb = mc._encode_key(k)
        mc.check_key(kb)
        server, _ = mc._get_server(kb)
        out.append(-1 if server is None else mc.servers.index(server))
    return out


def gen_modula(keys):
    cases = []

    def case(name, nodes, dead=()):
        print("modula:", name, file=sys.stderr)
        cases.append(
            {"name": name, "servers": nodes, "dead": list(dead), "expected": modula_placement(nodes, keys, dead)}
        )

    case("equal3", EQUAL3)
    case("equal3-dead-1", EQUAL3, [1])
    case("weighted123", WEIGHTED123)
    case("five", FIVE)
    case("port11211", PORT11211)
    case("weighted-3-1-2-5", WEIGHTED_MODULA)
    case("weighted-3-1-2-5-dead-3", WEIGHTED_MODULA, [3])
    # 3 of 5 dead: some keys hit dead servers on all 10 tries, and python-memcached gives up.
    case("five-dead-1-2-3", FIVE, [1, 2, 3])
    return cases


# --------------------------------------------------------------------------------------------


def versions():
    def cmd(args):
        try:
            return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    return {
        "python": sys.version.split()[0],
        "pylibmc": pylibmc.__version__,
        "libmemcached (pylibmc build headers)": pylibmc.libmemcached_version,
        "libmemcached (runtime, dpkg libmemcached11)": cmd(["dpkg-query", "-W", "-f=${Version}", "libmemcached11"]),
        "memcached": cmd(["memcached", "-V"]),
        "pymemcache": pymemcache.__version__,
        "python-memcached": memcache.__version__,
        "python-memcached (dpkg python3-memcache)": cmd(["dpkg-query", "-W", "-f=${Version}", "python3-memcache"]),
    }


def write(name, reference, notes, keys, cases):
    path = os.path.join(OUT_DIR, name + ".json")
    dump = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    lines = ["{"]
    lines.append('"generator":"scripts/gen-hash-vectors.py",')
    lines.append('"reference":%s,' % dump(reference))
    lines.append('"notes":%s,' % dump(notes))
    lines.append('"keys":[')
    lines.append(",\n".join(dump(k) for k in keys))
    lines.append("],")
    lines.append('"cases":[')
    lines.append(",\n".join(dump(c) for c in cases))
    lines.append("]")
    lines.append("}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", path, os.path.getsize(path), "bytes", file=sys.stderr)


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    keys = gen_keys()
    v = versions()
    write(
        "modula",
        {"client": "python-memcached memcache.Client._get_server", **v},
        ["dead servers: connect() stubbed to report them dead", "expected -1: no server (all retries dead)"],
        keys,
        gen_modula(keys),
    )
    write(
        "rendezvous",
        {"client": "pymemcache HashClient (RendezvousHash), str keys, allow_unicode_keys=True", **v},
        ["dead servers removed through HashClient.remove_server()", "weights are not passed: HashClient has none"],
        keys,
        gen_rendezvous(keys),
    )
    write(
        "ketama",
        {"client": 'pylibmc Client(behaviors={"ketama_weighted": True}) against live memcached servers', **v},
        [
            "placement read back from each server after storing every key through pylibmc",
            "sameAs: this server list is that case's list without its dead servers",
        ],
        keys,
        gen_ketama(keys),
    )


if __name__ == "__main__":
    main()
