#!/usr/bin/env python3
"""Extract URLs and attachment SHA-256 digests from mail files, independently
of ioc-milter, with Python's standard library only: the email package for
MIME, a URL regular expression for links, and hashlib for digests.

Usage: independent_extract.py DIRECTORY
Prints one JSON object per file, sorted by path:
{"file": "relative/path", "urls": [...], "sha256": [[digest, crlf_digest], ...],
 "zip_member_sha256": [...]}

For each attachment, "sha256" contains the digest of the payload as the email
package decodes it and the digest with every line end written as CRLF.
"zip_member_sha256" lists the digests of the members of ZIP attachments, read
with the zipfile module.

URLs are reduced to a simple canonical form (lowercase scheme and host, IDNA
host, no user name, no default port, no fragment, "/" for an empty path) so
that the comparison with ioc-milter shows real differences, not spelling.
"""

import email
import email.policy
import hashlib
import html
import io
import json
import os
import re
import sys
import urllib.parse
import zipfile

URL_PATTERN = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
TRAILING = ".,;:!?'\")]}>*"
MAX_FILES = 100000


UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def escapes(text):
    """Decode escapes of unreserved characters and write the others in
    uppercase hex, so escape spelling is not counted as a difference."""

    def fix(match):
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else "%" + match.group(1).upper()

    return re.sub(r"%([0-9A-Fa-f]{2})", fix, text)


def canonical(url):
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if not host:
            return None
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
        host = host.rstrip(".").lower()
        if ":" in host:
            host = "[" + host + "]"
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else "%s:%d" % (host, port)
    path = escapes(parts.path) or "/"
    query = "?" + escapes(parts.query) if parts.query else ""
    return "%s://%s%s%s" % (scheme, netloc, path, query)


def urls_in(text):
    found = []
    for match in URL_PATTERN.finditer(text):
        url = match.group(0)
        while url and url[-1] in TRAILING:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        value = canonical(url)
        if value:
            found.append(value)
    return found


def zip_members(data, depth, found):
    """Add the SHA-256 of each ZIP member, opening archives inside
    archives up to two levels as ioc-milter does by default."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()[:100]
        for info in infos:
            if info.is_dir() or info.flag_bits & 1:
                continue
            member = archive.read(info)
            found.add(hashlib.sha256(member).hexdigest())
            if depth < 2 and member[:4] == b"PK\x03\x04":
                zip_members(member, depth + 1, found)
    except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError, OSError):
        pass


def part_text(part):
    payload = part.get_payload(decode=True)
    if payload is None:
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def extract(path):
    with open(path, "rb") as handle:
        message = email.message_from_binary_file(handle, policy=email.policy.compat32)
    urls = set()
    digests = set()
    members = set()
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_maintype() == "message":
            continue
        ctype = part.get_content_type()
        disposition = str(part.get("Content-Disposition") or "").lower()
        is_attachment = disposition.startswith("attachment") or part.get_filename()
        if ctype in ("text/plain", "text/html") and not is_attachment:
            text = part_text(part)
            if ctype == "text/html":
                text = html.unescape(text)
            urls.update(urls_in(text))
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        digest = hashlib.sha256(payload).hexdigest()
        # The email package turns CRLF into LF in parts that are not base64;
        # the digest with CRLF line ends, as the part was sent, is kept too.
        crlf = payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        digests.add((digest, hashlib.sha256(crlf).hexdigest()))
        if payload[:4] == b"PK\x03\x04":
            zip_members(payload, 1, members)
    return sorted(urls), sorted(digests), sorted(members)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: independent_extract.py DIRECTORY")
    root = sys.argv[1]
    paths = []
    for directory, _, names in os.walk(root):
        for name in names:
            paths.append(os.path.join(directory, name))
    paths.sort()
    for path in paths[:MAX_FILES]:
        try:
            urls, digests, members = extract(path)
        except Exception as error:  # report and go on: one bad file is data
            print(json.dumps({"file": os.path.relpath(path, root), "error": str(error)}))
            continue
        record = {
            "file": os.path.relpath(path, root),
            "urls": urls,
            "sha256": digests,
            "zip_member_sha256": members,
        }
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    main()
