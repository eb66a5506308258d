#!/usr/bin/env python3
"""Writes the medallion configuration and a memory-backend data file with
ioc-milter's own STIX 2.1 test indicators, dated relative to now so that a
poll with the default age (30 days) keeps them.

usage: make_data.py OUTDIR BASEURL
"""
import json
import sys
import uuid
from datetime import datetime, timedelta, timezone

COLLECTION = "3c9e6f1a-2b7d-4e58-9a41-0d5f8c2e7b13"
WRITABLE = "8d2a4c6e-1f3b-4a5d-9c7e-2b4d6f8a0c1e"
IDENTITY = "identity--5b0f3c2e-7a61-4d8e-b2c9-1e4f6a8d0c37"


def stamp(days_ago, hours=0, precision="ms"):
    t = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    t = t - timedelta(days=days_ago, hours=hours)
    if precision == "us":
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def indicator(number, name, pattern, days_ago, **extra):
    oid = "indicator--" + str(uuid.uuid5(uuid.NAMESPACE_URL, "ioc-milter-test/%d" % number))
    created = stamp(days_ago, 2)
    obj = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": oid,
        "created_by_ref": IDENTITY,
        "created": created,
        "modified": created,
        "name": name,
        "indicator_types": ["malicious-activity"],
        "pattern": pattern,
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": created,
    }
    obj.update(extra)
    return obj


def main():
    out, base = sys.argv[1], sys.argv[2].rstrip("/")
    sha256 = "5e8d0b2c4a7f9e1d3c6b8a0f2e4d6c8b0a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d"
    md5 = "0f3e5d7c9b1a2f4e6d8c0b2a4f6e8d0c"
    sha1 = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
    objects = [
        {
            "type": "identity",
            "spec_version": "2.1",
            "id": IDENTITY,
            "created": stamp(20),
            "modified": stamp(20),
            "name": "ioc-milter test producer",
            "identity_class": "organization",
        },
        indicator(1, "C2 address", "[ipv4-addr:value = '203.0.113.10']", 12),
        indicator(2, "Bad network", "[ipv4-addr:value ISSUBSET '198.51.100.0/24']", 11),
        indicator(3, "C2 IPv6", "[ipv6-addr:value = '2001:db8:bad::1']", 10),
        indicator(4, "C2 domain", "[domain-name:value = 'malware-c2.example.net']", 9),
        indicator(5, "Payload URL", "[url:value = 'http://payload.example.com/drop/loader.bin']", 8),
        indicator(6, "Phish sender", "[email-addr:value = 'phisher@bad-sender.example']", 7),
        indicator(7, "Loader SHA-256", "[file:hashes.'SHA-256' = '%s']" % sha256, 6),
        indicator(8, "Loader MD5", "[file:hashes.MD5 = '%s']" % md5, 6),
        indicator(9, "Loader SHA-1", "[file:hashes.'SHA-1' = '%s']" % sha1, 6),
        indicator(10, "Phish domain or URL",
                  "[domain-name:value = 'login-phish.example.org'] OR "
                  "[url:value = 'https://login-phish.example.org/account/verify']", 5),
        indicator(11, "Needs both", "[ipv4-addr:value = '192.0.2.50' AND domain-name:value = 'both.example.net']", 5),
        indicator(12, "Sequence", "[ipv4-addr:value = '192.0.2.51'] FOLLOWEDBY [ipv4-addr:value = '192.0.2.52']", 5),
        indicator(13, "Ended", "[domain-name:value = 'ended.example.net']", 4,
                  valid_until=stamp(1)),
        indicator(14, "Broken address", "[ipv4-addr:value = '999.1.1.1']", 4),
    ]
    # Two versions of one indicator: the newer replaces the older.
    old = indicator(15, "Versioned", "[domain-name:value = 'old-version.example.org']", 3)
    new = dict(old)
    new["modified"] = stamp(2)
    new["pattern"] = "[domain-name:value = 'new-version.example.org']"
    objects += [old, new]

    manifest = []
    for index, obj in enumerate(objects):
        manifest.append({
            "id": obj["id"],
            "date_added": stamp(14 - min(index, 13), 0, "us") if obj is not new else stamp(2, 0, "us"),
            "version": obj["modified"],
            "media_type": "application/stix+json;version=2.1",
        })
    data = {
        "/discovery": {
            "title": "ioc-milter test TAXII 2.1 server",
            "description": "loopback test peer",
            "contact": "nobody@test.invalid",
            "default": base + "/api1/",
            "api_roots": [base + "/api1/"],
        },
        "api1": {
            "information": {
                "title": "ioc-milter test root",
                "description": "indicators for the ioc-milter tests",
                "versions": ["application/taxii+json;version=2.1"],
                "max_content_length": 9765625,
            },
            "status": [],
            "collections": [{
                "id": COLLECTION,
                "title": "ioc-milter-test",
                "description": "STIX 2.1 indicators written by ioc-milter",
                "can_read": True,
                "can_write": True,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": objects,
                "manifest": manifest,
            }, {
                "id": WRITABLE,
                "title": "ioc-milter-writable",
                "description": "empty at start; tests add and revoke objects here",
                "can_read": True,
                "can_write": True,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": [],
                "manifest": [],
            }],
        },
    }
    with open(out + "/data.json", "w") as f:
        json.dump(data, f, indent=1)
    config = {
        "backend": {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": out + "/data.json",
            "session_timeout": 60,
            "check_interval": 10,
        },
        "users": {"milter": "milter-test-pass"},
        "taxii": {"max_page_size": 100},
    }
    with open(out + "/config.json", "w") as f:
        json.dump(config, f, indent=1)


if __name__ == "__main__":
    main()
