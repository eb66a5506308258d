"""OpenTAXII authentication that accepts any password for a known username.

AlienVault OTX takes the API key as the basic-auth username and ignores the
password. This class does the same over OpenTAXII's SQL account table, so an
unknown username is still rejected.
"""
from opentaxii.auth.sqldb import SQLDatabaseAPI
from opentaxii.auth.sqldb.models import Account


class UsernameOnlyAuth(SQLDatabaseAPI):
    def authenticate(self, username, password):
        account = self.db.session.query(Account).filter_by(username=username).one_or_none()
        if account is None:
            return None
        return self._generate_token(account.id, ttl=self.token_ttl_secs)
