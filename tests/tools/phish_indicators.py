#!/usr/bin/env python3
"""Derive indicators from phishing messages and write them as one STIX 1.2 package.

Usage: phish_indicators.py OUT.xml MESSAGE...

For each message, independently of ioc-milter's own extraction:
  * the host of the first http(s) URL in a text/plain or text/html part
    (after transfer and charset decoding), unless the host belongs to a large
    shared platform listed in SHARED_PLATFORMS, becomes a DomainNameObj FQDN;
  * the SHA-256 of the first attachment's decoded bytes, when there is one,
    becomes a FileObj hash.
The package is shaped like an AlienVault OTX export. One JSON object per
message goes to stdout: {"file", "domain", "sha256"} (null when absent).
The messages are read as data only: no URL is opened.
"""
import email
import email.policy
import hashlib
import json
import re
import sys
import uuid
from datetime import datetime, timezone
from xml.sax.saxutils import escape

URL_PATTERN = re.compile(r"https?://([A-Za-z0-9.-]+)", re.IGNORECASE)

# Hosts of platforms that serve many unrelated customers; an indicator on one
# of them would match legitimate mail too.
SHARED_PLATFORMS = (
    "google.com", "googleapis.com", "googleusercontent.com", "gstatic.com",
    "microsoft.com", "office.com", "live.com", "outlook.com", "sharepoint.com",
    "windows.net", "azureedge.net", "amazonaws.com", "cloudfront.net",
    "w3.org", "apple.com", "facebook.com", "twitter.com", "linkedin.com",
    "youtube.com", "github.com", "githubusercontent.com", "dropbox.com",
    "wp.com", "wordpress.com", "blogspot.com", "weebly.com", "wixsite.com",
    "firebaseapp.com", "web.app", "ipfs.io", "cloudflare-ipfs.com",
    "r2.dev", "pages.dev", "workers.dev", "herokuapp.com", "glitch.me",
    "mailchimp.com", "list-manage.com", "sendgrid.net", "godaddysites.com",
    "translate.goog", "bit.ly", "t.co", "tinyurl.com", "yahoo.com",
    "google.co.uk", "docusign.net", "symantec.com", "imgur.com",
    "app-us1.com", "127.net", "ledger.com",
)


def is_shared(host):
    host = host.lower().rstrip(".")
    return any(host == base or host.endswith("." + base) for base in SHARED_PLATFORMS)


def part_text(part):
    try:
        return part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        return payload.decode("latin-1")


def first_url_host(message):
    for part in message.walk():
        if part.get_content_maintype() != "text":
            continue
        if part.get_content_subtype() not in ("plain", "html"):
            continue
        if part.get_content_disposition() == "attachment":
            continue
        text = part_text(part)
        if not isinstance(text, str):
            continue
        for match in URL_PATTERN.finditer(text):
            host = match.group(1).lower().rstrip(".")
            if "." not in host or is_shared(host):
                continue
            return host
    return None


def first_attachment_sha256(message):
    for part in message.walk():
        if part.is_multipart():
            continue
        if part.get_content_disposition() != "attachment":
            continue
        payload = part.get_payload(decode=True)
        if payload:
            return hashlib.sha256(payload).hexdigest()
    return None


def observable(kind, value, key):
    object_id = uuid.uuid5(uuid.NAMESPACE_URL, "object:" + key)
    observable_id = uuid.uuid5(uuid.NAMESPACE_URL, "observable:" + key)
    if kind == "domain":
        title = f"domain - {value}"
        properties = (
            '<cybox:Properties xsi:type="DomainNameObj:DomainNameObjectType" type="FQDN">'
            f'<DomainNameObj:Value condition="Equals">{escape(value)}</DomainNameObj:Value>'
            "</cybox:Properties>"
        )
        object_kind = "DomainName"
    else:
        title = f"FileHash-SHA256 - {value}"
        properties = (
            '<cybox:Properties xsi:type="FileObj:FileObjectType"><FileObj:Hashes><cyboxCommon:Hash>'
            '<cyboxCommon:Type xsi:type="cyboxVocabs:HashNameVocab-1.0" condition="Equals">SHA256</cyboxCommon:Type>'
            f'<cyboxCommon:Simple_Hash_Value condition="Equals">{value}</cyboxCommon:Simple_Hash_Value>'
            "</cyboxCommon:Hash></FileObj:Hashes></cybox:Properties>"
        )
        object_kind = "File"
    return (
        f'<cybox:Observable id="alienvault-otx:Observable-{observable_id}">'
        f"<cybox:Title>{escape(title)}</cybox:Title>"
        f'<cybox:Object id="alienvault-otx:{object_kind}-{object_id}">{properties}</cybox:Object>'
        "</cybox:Observable>"
    )


def indicator(family, vocabulary, items, stamp):
    """One Indicator per family; several values form an OR composition."""
    indicator_id = uuid.uuid5(uuid.NAMESPACE_URL, "indicator:" + family)
    composition_id = uuid.uuid5(uuid.NAMESPACE_URL, "composition:" + family)
    inner = "".join(items)
    return (
        f'<stix:Indicator id="alienvault-otx:Indicator-{indicator_id}" timestamp="{stamp}" '
        'xsi:type="indicator:IndicatorType">'
        f"<indicator:Title>[OTX] [{family}] Phishing corpus sample</indicator:Title>"
        f'<indicator:Type xsi:type="stixVocabs:IndicatorTypeVocab-1.1">{vocabulary}</indicator:Type>'
        f'<indicator:Observable id="alienvault-otx:Observable-{composition_id}">'
        f'<cybox:Observable_Composition operator="OR">{inner}</cybox:Observable_Composition>'
        "</indicator:Observable></stix:Indicator>"
    )


def package(domains, hashes):
    stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    indicators = []
    if domains:
        indicators.append(indicator(
            "Domain", "Domain Watchlist",
            [observable("domain", value, "domain:" + value) for value in domains], stamp))
    if hashes:
        indicators.append(indicator(
            "Files", "File Hash Watchlist",
            [observable("sha256", value, "sha256:" + value) for value in hashes], stamp))
    return (
        '<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" '
        'xmlns:stixCommon="http://stix.mitre.org/common-1" '
        'xmlns:stixVocabs="http://stix.mitre.org/default_vocabularies-1" '
        'xmlns:indicator="http://stix.mitre.org/Indicator-2" '
        'xmlns:cybox="http://cybox.mitre.org/cybox-2" '
        'xmlns:cyboxCommon="http://cybox.mitre.org/common-2" '
        'xmlns:cyboxVocabs="http://cybox.mitre.org/default_vocabularies-2" '
        'xmlns:DomainNameObj="http://cybox.mitre.org/objects#DomainNameObject-1" '
        'xmlns:FileObj="http://cybox.mitre.org/objects#FileObject-2" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:alienvault-otx="https://otx.alienvault.com" '
        f'id="alienvault-otx:Package-{uuid.uuid5(uuid.NAMESPACE_URL, "phish-sample")}" '
        f'version="1.2" timestamp="{stamp}">'
        "<stix:STIX_Header><stix:Title>Phishing corpus sample</stix:Title>"
        '<stix:Package_Intent xsi:type="stixVocabs:PackageIntentVocab-1.0">Indicators</stix:Package_Intent>'
        "</stix:STIX_Header>"
        f'<stix:Indicators>{"".join(indicators)}</stix:Indicators>'
        "</stix:STIX_Package>\n"
    )


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: phish_indicators.py OUT.xml MESSAGE...")
    out_path, paths = sys.argv[1], sys.argv[2:]
    domains, hashes = [], []
    for path in paths:
        with open(path, "rb") as handle:
            message = email.message_from_binary_file(handle, policy=email.policy.default)
        domain = first_url_host(message)
        sha256 = first_attachment_sha256(message)
        if domain and domain not in domains:
            domains.append(domain)
        if sha256 and sha256 not in hashes:
            hashes.append(sha256)
        print(json.dumps({"file": path, "domain": domain, "sha256": sha256}))
    with open(out_path, "w", encoding="utf-8") as handle:
        handle.write(package(domains, hashes))


if __name__ == "__main__":
    main()
