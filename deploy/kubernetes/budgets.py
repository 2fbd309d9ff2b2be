"""What a holdfast node needs from Kubernetes, computed from its config:
memory (the memory tier, the fill buffers, connections at their limits, the
disk index, the runtime) and disk (the disk tier's budget plus what the
filesystem and the writes in flight add). generate.py writes the results
into the manifests; tests/deploy/check_manifests.py checks them.

The figures per item are measured (README: "Budgets and what they cost")."""
import re
import tomllib

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": KIB, "m": 1000**2, "mb": 1000**2, "mib": MIB,
         "g": 1000**3, "gb": 1000**3, "gib": GIB, "t": 1000**4, "tb": 1000**4, "tib": 1 << 40}

# Defaults of the node (crates/*: DEFAULT_*).
DEFAULTS = {"memory_size": 256 * MIB, "fill_buffer_size": 64 * MIB, "max_object_size": 64 * MIB,
            "disk_size": 10 * GIB, "max_connections": 4096, "h3_max_connections": 1024,
            "h3_socket_buffer": 4 * MIB}
RUNTIME = 64 * MIB            # runtime, threads, allocator slack, logs in flight
PER_TCP_CONNECTION = 48 * KIB  # hyper + rustls buffers of an open connection
PER_QUIC_CONNECTION = 64 * KIB  # quinn + rustls state of an open connection
PER_DISK_FILE_INDEX = 64       # bytes of memory per file of the disk tier
PER_DISK_FILE_DIRENT = 40      # directory entry bytes per file on disk
DISK_DIRECTORIES = 514 * 4 * KIB  # blobs/ and records/ fan-out, tmp, quarantine
DISK_WRITERS = 4               # concurrent disk writes (tiers.rs DISK_WRITERS)
QUARANTINE_KEPT = 8            # disk/mod.rs QUARANTINE_KEPT
LOGS = 1 * GIB                 # container logs, which count as ephemeral storage


def size(text, default):
    if text is None:
        return default
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def budgets(config_text):
    """(memory bytes, disk-tier volume bytes or None) a node with this config needs."""
    config = tomllib.loads(config_text)
    cache, server, tls = config.get("cache", {}), config.get("server", {}), config.get("tls", {})
    memory_size = size(cache.get("memory_size"), DEFAULTS["memory_size"])
    fills = size(cache.get("fill_buffer_size"), DEFAULTS["fill_buffer_size"])
    max_object = size(cache.get("max_object_size"), DEFAULTS["max_object_size"])
    tcp = server.get("max_connections", DEFAULTS["max_connections"])
    quic = tls.get("h3_max_connections", DEFAULTS["h3_max_connections"]) if tls.get("h3") else 0
    # Each HTTP/3 socket's kernel buffers, both ways, charged to the pod while
    # datagrams wait in them; Linux doubles the size asked for.
    udp = (len(tls.get("listen", [])) * 4 * size(tls.get("h3_socket_buffer"), DEFAULTS["h3_socket_buffer"])
           if tls.get("h3") else 0)
    disk = None
    files = 0
    if cache.get("dir"):
        disk_size = size(cache.get("disk_size"), DEFAULTS["disk_size"])
        files = cache.get("disk_max_files", max(disk_size // 8192, 1024))
        disk = (disk_size + DISK_DIRECTORIES + files * PER_DISK_FILE_DIRENT
                + (DISK_WRITERS + QUARANTINE_KEPT) * max_object)
    # Partial objects (206 segments) are kept within a sixteenth of the
    # memory tier's budget, beside it (holdfast_cache::partial).
    memory = (memory_size + memory_size // 16 + fills + tcp * PER_TCP_CONNECTION + quic * PER_QUIC_CONNECTION
              + udp + files * PER_DISK_FILE_INDEX + RUNTIME)
    return memory, disk


def quantity(n, step):
    """n rounded up to a multiple of step, as a Kubernetes quantity."""
    n = -(-n // step) * step
    return f"{n // GIB}Gi" if n % GIB == 0 else f"{n // MIB}Mi"
