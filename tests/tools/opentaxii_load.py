#!/usr/bin/env python3
"""Load STIX 1.x packages into an OpenTAXII collection as content blocks.

Usage (with the OpenTAXII venv's python, OPENTAXII_CONFIG set and this
directory on PYTHONPATH):

    opentaxii_load.py [--account USER] COLLECTION FILE[@DAYS_AGO]...

The collection is created as a DATA_FEED on the collections, poll and inbox
services when it does not exist, and USER (default otx-api-key-0001) gets
modify permission on it. Each block's Timestamp_Label is the package's
`timestamp` attribute, or, with @DAYS_AGO, the time DAYS_AGO days before now
(whole seconds, UTC). With @DAYS_AGO every `timestamp` attribute in the
package is set to the same instant, so the package looks as old as its label.
The script uses OpenTAXII 0.9.3's persistence API directly, unlike an inbox
push, which would stamp every block with the time of the push.
"""
import argparse
import sys
from datetime import datetime, timedelta, timezone

from lxml import etree

from opentaxii.cli import app
from opentaxii.entities import Account
from opentaxii.local import context
from opentaxii.taxii.entities import (
    CollectionEntity,
    ContentBindingEntity,
    ContentBlockEntity,
)

COLLECTION_SERVICES = ["collections", "poll", "inbox"]


def parse_file_argument(argument):
    """Split FILE[@DAYS_AGO] into the path and the label (None: from the package)."""
    path, sep, days = argument.rpartition("@")
    if not sep:
        return argument, None
    try:
        days_ago = float(days)
    except ValueError:
        sys.exit(f"invalid days in {argument!r}: expected FILE@NUMBER, e.g. pulse.xml@10")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    return path, now - timedelta(days=days_ago)


def ensure_collection(taxii1, name):
    collection = taxii1.persistence.get_collection(name)
    if collection is not None:
        return collection
    collection = taxii1.persistence.create_collection(
        CollectionEntity(
            name=name,
            description=f"test collection {name}",
            type=CollectionEntity.TYPE_FEED,
            accept_all_content=True,
            available=True,
        )
    )
    taxii1.persistence.set_collection_services(collection.id, COLLECTION_SERVICES)
    return collection


def grant_modify(auth, username, collection_name):
    for account in auth.get_accounts():
        if account.username == username:
            permissions = dict(account.permissions or {})
            permissions[collection_name] = "modify"
            account.permissions = permissions
            auth.update_account(account, None)
            return
    sys.exit(f"account {username!r} not found: run opentaxii-sync-data first")


def read_package(path, label):
    """Return the package as text, its STIX version and its Timestamp_Label.

    The text has no XML declaration: libtaxii 1.1 fails to embed content
    that starts with one into a Poll_Response.
    """
    with open(path, "rb") as handle:
        root = etree.fromstring(handle.read())
    version = root.get("version", "1.2")
    if label is None:
        stamp = root.get("timestamp")
        if stamp is None:
            sys.exit(f"{path}: the package has no timestamp attribute; pass {path}@DAYS_AGO")
        label = datetime.fromisoformat(stamp)
    else:
        for element in root.iter():
            if element.get("timestamp") is not None:
                element.set("timestamp", label.isoformat())
    return etree.tostring(root, encoding="unicode"), version, label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--account", default="otx-api-key-0001")
    parser.add_argument("collection")
    parser.add_argument("files", nargs="+", metavar="FILE[@DAYS_AGO]")
    args = parser.parse_args()

    with app.app_context():
        context.account = Account(id=None, username="loader", permissions=None, is_admin=True)
        taxii1 = app.taxii_server.servers.taxii1
        collection = ensure_collection(taxii1, args.collection)
        grant_modify(app.taxii_server.auth, args.account, args.collection)
        for argument in args.files:
            path, label = parse_file_argument(argument)
            content, version, stamp = read_package(path, label)
            block = ContentBlockEntity(
                content=content,
                timestamp_label=stamp,
                content_binding=ContentBindingEntity(f"urn:stix.mitre.org:xml:{version}"),
            )
            block = taxii1.persistence.create_content(block, collections=[collection])
            print(f"loaded {path} into {args.collection}: block {block.id}, "
                  f"Timestamp_Label {stamp.isoformat()}, STIX {version}")


if __name__ == "__main__":
    main()
