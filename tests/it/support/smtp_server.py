"""A real SMTP server for the email notification tests (aiosmtpd).

Listens on 127.0.0.1:PORT, requires STARTTLS (with CERT and KEY) before
anything else, and AUTH with USER and the password in $SMTP_PASSWORD.
Every message accepted is appended to OUT as one JSON line (envelope,
subject, decoded text body, whether TLS and AUTH were used). Prints
`ready` on stdout once it accepts connections; runs until killed.

With SMTP_STARTTLS=off it offers no STARTTLS at all and takes AUTH and
mail in clear (a server a client must not give a password to); every
AUTH attempt is then appended to OUT.auth as one JSON line.

usage: smtp_server.py PORT CERT KEY USER OUT
"""

import email
import email.policy
import json
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, user, out = sys.argv[1:6]
password = os.environ["SMTP_PASSWORD"]


class Recorder:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "subject": str(message["subject"]),
            "body": message.get_content(),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 message recorded"


starttls = os.environ.get("SMTP_STARTTLS", "on") != "off"


def authenticate(server, session, envelope, mechanism, auth_data):
    if not starttls:
        with open(out + ".auth", "a", encoding="utf-8") as f:
            attempt = {"mechanism": mechanism, "tls": session.ssl is not None}
            f.write(json.dumps(attempt) + "\n")
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    return AuthResult(success=ok, handled=False)


if starttls:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Recorder(),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
else:
    controller = Controller(
        Recorder(),
        hostname="127.0.0.1",
        port=int(port),
        authenticator=authenticate,
        auth_required=False,
        auth_require_tls=False,
    )
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
