"""AWS STS test upstream: AssumeRoleWithWebIdentity (query protocol, XML responses).

`POST /` (form body) or `GET /?Action=AssumeRoleWithWebIdentity&...` with RoleArn,
RoleSessionName and WebIdentityToken returns the temporary credentials
AccessKeyId `ASIATEST`, SecretAccessKey `sts-secret`, SessionToken `sts-token`, expiring
after DurationSeconds (default 3600; 900..43200). A WebIdentityToken equal to `invalid`
gives 400 InvalidIdentityToken, `expired` gives 400 ExpiredTokenException. The Bedrock test
upstream mounts these routes too and accepts the temporary credentials it hands out.
"""
from __future__ import annotations

import datetime as dt
import re
from xml.sax.saxutils import escape

from aiohttp import web

from .conventions import stable_id

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
TEMP_ACCESS_KEY = "ASIATEST"
TEMP_SECRET_KEY = "sts-secret"
TEMP_SESSION_TOKEN = "sts-token"
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


def _error(status: int, code: str, message: str, kind: str = "Sender") -> web.Response:
    xml = (f'<ErrorResponse xmlns="{NS}">\n  <Error>\n    <Type>{kind}</Type>\n'
           f"    <Code>{code}</Code>\n    <Message>{escape(message)}</Message>\n  </Error>\n"
           f"  <RequestId>{stable_id('', code, message, length=32)}</RequestId>\n</ErrorResponse>\n")
    return web.Response(status=status, text=xml, content_type="text/xml")


async def sts_handler(request: web.Request) -> web.Response:
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    action = params.get("Action")
    if action != "AssumeRoleWithWebIdentity":
        return _error(400, "InvalidAction", f"Could not find operation {action} for version 2011-06-15")
    for name in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
        if not params.get(name):
            field = name[0].lower() + name[1:]
            return _error(400, "ValidationError", f"1 validation error detected: Value null at '{field}' "
                                                  "failed to satisfy constraint: Member must not be null")
    role_arn, session, token = params["RoleArn"], params["RoleSessionName"], params["WebIdentityToken"]
    if not ROLE_ARN.match(role_arn):
        return _error(400, "ValidationError", f"{role_arn} is invalid")
    if token == "invalid":
        return _error(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider")
    if token == "expired":
        return _error(400, "ExpiredTokenException", "Token expired: current date/time is after the exp claim")
    try:
        duration = int(params.get("DurationSeconds", "3600"))
    except ValueError:
        duration = -1
    if not 900 <= duration <= 43200:
        return _error(400, "ValidationError", "1 validation error detected: Value at 'durationSeconds' "
                                              "failed to satisfy constraint: Member must have value between 900 and 43200")
    expiration = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=duration)
    account, role_name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[-1]
    xml = f"""<AssumeRoleWithWebIdentityResponse xmlns="{NS}">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:gatehouse:gatehouse</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::{account}:assumed-role/{escape(role_name)}/{escape(session)}</Arn>
      <AssumedRoleId>AROATESTROLEID:{escape(session)}</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{TEMP_SESSION_TOKEN}</SessionToken>
      <SecretAccessKey>{TEMP_SECRET_KEY}</SecretAccessKey>
      <Expiration>{expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}</Expiration>
      <AccessKeyId>{TEMP_ACCESS_KEY}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::{account}:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/TEST</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>{stable_id('', session, token, length=32)}</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>
"""
    return web.Response(text=xml, content_type="text/xml")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/", sts_handler)
    app.router.add_get("/", sts_handler)


def make_app(recorder) -> web.Application:
    app = web.Application()
    add_routes(app)
    return app
