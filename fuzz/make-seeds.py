#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ (committed; run again after changing it).

The JWT seeds are signed with the auth_header target's key and the STUN seeds carry
MESSAGE-INTEGRITY for the stun target's TURN secret, so they reach the code behind those checks.
"""
import base64, binascii, hashlib, hmac, json, os, re, struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
ROOM_A = "!" + "A" * 43
ROOM_B = "!" + "B" * 43
EVENT = "$" + "E" * 43
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def lines(*frames):
    return "\n".join(json.dumps(f, ensure_ascii=False) for f in frames) + "\n"


# ---- ws_frame: one client frame per line
invite = {"call_id": "c1", "party_id": "p1", "lifetime": 30000, "invitee": "@ben:chat.test",
          "offer": {"type": "offer", "sdp": SDP}}
write("ws_frame", "ping", lines({"t": "ping"}))
write("ws_frame", "send", lines({"t": "send", "room_id": ROOM_A, "txn_id": "t1",
                                 "body": "hi @ben, see <b>this</b> & @cy:chat.test (mail: a@b.c)"}))
write("ws_frame", "typing-presence", lines({"t": "presence", "state": "online"},
                                           {"t": "typing", "room_id": ROOM_A, "typing": True},
                                           {"t": "presence", "state": "idle"},
                                           {"t": "typing", "room_id": ROOM_A, "typing": False}))
write("ws_frame", "call-roster", lines({"t": "call_join", "room_id": ROOM_A, "conf_id": "conf-1"},
                                       {"t": "call_join", "room_id": ROOM_B, "conf_id": "conf-2"},
                                       {"t": "call_leave", "room_id": ROOM_B, "conf_id": "conf-2"}))
write("ws_frame", "call-invite", lines({"t": "call", "room_id": ROOM_A, "type": "m.call.invite",
                                       "content": invite, "txn_id": "c1"}))
write("ws_frame", "read", lines({"t": "read", "room_id": ROOM_A, "pos": 12}))
write("ws_frame", "refused", lines({"t": "send", "room_id": "!short", "body": "x", "txn_id": "t2"},
                                   {"t": "typing", "room_id": "!" + "C" * 43, "typing": True},
                                   {"t": "presence", "state": "away"}, {"t": "nope"}))

# ---- api_body: route name, newline, body
for route, body in [
    ("register", {"username": "ana", "password": "correct horse battery"}),
    ("login", {"username": "Ana", "password": "correct horse battery"}),
    ("password", {"old_password": "correct horse battery", "new_password": "staple battery horse"}),
    ("rooms", {"name": "General", "topic": "Anything\ngoes", "visibility": "public"}),
    ("invite", {"user_id": "@ben:chat.test"}),
    ("dm", {"user_id": "ben"}),
    ("messages", {"body": "hello @ben and @cy:chat.test", "txn_id": "m1"}),
    ("read", {"event_id": EVENT}),
    ("settings", {"appear_offline": True, "hide_receipts": False}),
]:
    write("api_body", route, route + "\n" + json.dumps(body))
for route, body in [
    ("form_login", "username=ana&password=correct+horse+battery"),
    ("form_rooms", "name=General&topic=Anything&visibility=private"),
    ("form_invite", "user=%40ben%3Achat.test"),
    ("form_send", "body=hi+%3Cb%3Ethere%3C%2Fb%3E+%40ben&txn_id=abc123"),
    ("form_privacy", "appear_offline=on&hide_receipts=on"),
    ("form_password", "old_password=correct+horse+battery&new_password=staple+battery+horse"),
    ("query_messages", "before=120&limit=50"),
    ("query_history", "before=12"),
    ("query_ws", "since=42"),
]:
    write("api_body", route, route + "\n" + body)

# ---- auth_header: header lines; tokens signed with the target's key
JWT_SECRET = b"chat-fuzz-token-secret"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, alg="HS256", key=JWT_SECRET):
    head = b64u(json.dumps({"typ": "JWT", "alg": alg}, separators=(",", ":")).encode())
    body = b64u(json.dumps(claims, separators=(",", ":")).encode())
    if alg == "none":
        return f"{head}.{body}."
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64u(sig)}"


ANA = {"sub": "@ana:chat.test", "sid": "fuzz-session-ana", "iat": 1800000000, "exp": 4102444800}
good = jwt(ANA)
write("auth_header", "bearer", f"Authorization: Bearer {good}\nHost: chat.test\n")
write("auth_header", "cookie", f"Host: 127.0.0.1:8080\nOrigin: http://127.0.0.1:8080\nCookie: a=1; chat_token={good}; b=2\n")
write("auth_header", "referer", f"Host: a:1\nReferer: https://a:1/rooms\nCookie: chat_token={good}\n")
write("auth_header", "token-only", good)
write("auth_header", "ended-session", f"Authorization: bearer {jwt(dict(ANA, sid='gone'))}\n")
write("auth_header", "other-user", f"Authorization: Bearer {jwt(dict(ANA, sub='@eve:chat.test'))}\n")
write("auth_header", "expired", f"Authorization: Bearer {jwt(dict(ANA, exp=1000000000))}\n")
write("auth_header", "alg-none", f"Authorization: Bearer {jwt(ANA, alg='none')}\n")
write("auth_header", "forwarded", "X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.1.2.3\n"
                                  "X-Forwarded-For: ::1\nAuthorization: Bearer x.y.z\n")
write("auth_header", "wrong-key", f"Authorization: Bearer {jwt(ANA, key=b'not-our-key')}\nOrigin: null\nHost: a\n")

# ---- stun: one datagram; credentials for the target's TURN secret
TURN_SECRET = b"chat-fuzz-turn-secret"
REALM = "chat.test"
COOKIE = 0x2112A442
TXID = bytes(range(1, 13))


def attr(t, v):
    return struct.pack(">HH", t, len(v)) + v + b"\0" * (-len(v) % 4)


def xor_addr(ip, port):
    ipb = bytes(int(x) for x in ip.split("."))
    c = struct.pack(">I", COOKIE)
    return struct.pack(">BBH", 0, 1, port ^ (COOKIE >> 16)) + bytes(a ^ b for a, b in zip(ipb, c))


def stun(mtype, attrs, username=None, password=None, fingerprint=False):
    body = b"".join(attr(t, v) for t, v in attrs)
    if username is not None:
        body = attr(0x0006, username.encode()) + attr(0x0014, REALM.encode()) + attr(0x0015, b"nonce-1234") + body
        key = hashlib.md5(f"{username}:{REALM}:{password}".encode()).digest()
        head = struct.pack(">HHI", mtype, len(body) + 24, COOKIE) + TXID
        mac = hmac.new(key, head + body, hashlib.sha1).digest()
        body += attr(0x0008, mac)
    if fingerprint:
        head = struct.pack(">HHI", mtype, len(body) + 8, COOKIE) + TXID
        crc = (binascii.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
        body += attr(0x8028, struct.pack(">I", crc))
    return struct.pack(">HHI", mtype, len(body), COOKIE) + TXID + body


USER = "4102444800:@ana:chat.test"
PASS = base64.b64encode(hmac.new(TURN_SECRET, USER.encode(), hashlib.sha1).digest()).decode()
UDP = (0x0019, bytes([17, 0, 0, 0]))
write("stun", "binding", stun(0x0001, [], fingerprint=True))
write("stun", "allocate-first", stun(0x0003, [UDP]))
write("stun", "allocate", stun(0x0003, [UDP], USER, PASS))
write("stun", "allocate-bad-password", stun(0x0003, [UDP], USER, "wrong"))
write("stun", "allocate-expired", stun(0x0003, [UDP], "1000000000:@ana:chat.test", PASS))
write("stun", "refresh", stun(0x0004, [(0x000D, struct.pack(">I", 0))], USER, PASS))
write("stun", "permission-public", stun(0x0008, [(0x0012, xor_addr("8.8.8.8", 5000))], USER, PASS))
write("stun", "permission-private", stun(0x0008, [(0x0012, xor_addr("10.0.0.1", 5000))], USER, PASS))
write("stun", "channel-bind", stun(0x0009, [(0x000C, struct.pack(">HH", 0x4000, 0)),
                                            (0x0012, xor_addr("203.0.113.9", 6000))], USER, PASS))
write("stun", "send-indication", stun(0x0016, [(0x0012, xor_addr("203.0.113.9", 6000)), (0x0013, b"media")]))
write("stun", "send-indication-private", stun(0x0016, [(0x0012, xor_addr("127.0.0.1", 22)), (0x0013, b"x")]))
write("stun", "channel-data", struct.pack(">HH", 0x4000, 5) + b"media")
write("stun", "allocate-success", stun(0x0103, [(0x0016, xor_addr("203.0.113.1", 49152))]))
damaged = bytearray(stun(0x0003, [UDP]))
damaged[22:24] = b"\xff\xff"  # attribute length past the end
write("stun", "damaged", bytes(damaged))

# ---- call_content: TYPE SENDER(0=ana 1=ben 2=cy 3=dan) CONTENT-JSON per line
def sig(kind, sender, content):
    return f"{kind} {sender} {json.dumps(content)}"


base = {"call_id": "c1", "party_id": "p1"}
write("call_content", "full-call", "\n".join([
    sig("invite", 0, invite),
    sig("answer", 1, {"call_id": "c1", "party_id": "q1", "answer": {"type": "answer", "sdp": SDP}}),
    sig("candidates", 0, dict(base, candidates=[{"candidate": "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host",
                                                "sdpMid": "0", "sdpMLineIndex": 0}])),
    sig("select_answer", 0, dict(base, selected_party_id="q1")),
    sig("negotiate", 1, {"call_id": "c1", "party_id": "q1", "description": {"type": "offer", "sdp": SDP}}),
    sig("hangup", 0, dict(base, reason="user_hangup")),
    sig("candidates", 1, {"call_id": "c1", "party_id": "q1", "candidates": [{"candidate": ""}]}),
]) + "\n")
write("call_content", "rejected", "\n".join([
    sig("invite", 0, dict(invite, call_id="c2", **{"chat.media": "voice"})),
    sig("answer", 2, {"call_id": "c2", "party_id": "x", "answer": {"type": "answer", "sdp": SDP}}),
    sig("reject", 1, {"call_id": "c2", "party_id": "q2"}),
]) + "\n")
write("call_content", "group", sig("invite", 1, dict(invite, call_id="g1", invitee="@cy:chat.test",
                                                     **{"chat.conf_id": "conf-1", "chat.ring": False})) + "\n")
write("call_content", "refused", "\n".join([
    sig("invite", 0, dict(invite, invitee="@dan:chat.test", call_id="c3")),
    sig("invite", 0, dict(invite, invitee="@ana:chat.test", call_id="c4")),
    sig("hangup", 0, dict(base, call_id="c9", reason="bored")),
    sig("m.call.bogus", 0, base),
    sig("hangup", 0, dict(base, **{"chat.call": {"duration_ms": 1}})),
]) + "\n")

# ---- render: a raw message body, or a JSON event
write("render", "markup", "Hello <b>world</b> <script>alert(1)</script> & \"quotes\" 'single' </li><li>\n")
write("render", "unicode", "héllo 日本語 🎉 @ben — ok\n\nsecond line")
write("render", "img-event", json.dumps({"type": "m.room.message", "sender": "@ana:chat.test",
                                         "content": {"msgtype": "m.text", "body": "<img src=x onerror=alert(1)>"}}))
write("render", "member-event", json.dumps({"type": "m.room.member", "sender": "@ana:chat.test",
                                            "state_key": "@ben\"><script>x</script>:chat.test",
                                            "content": {"membership": "invite"}}))
write("render", "name-event", json.dumps({"type": "m.room.name", "sender": "@ana:chat.test", "state_key": "",
                                          "content": {"name": "<h1>Room</h1>"}}))
write("render", "call-summary", json.dumps({"type": "m.call.hangup", "sender": "@ana:chat.test", "content": {
    "call_id": "c", "party_id": "p", "reason": "user_hangup", "chat.call": {
        "caller": "@ana:chat.test", "invitee": "@<b>ben</b>:chat.test", "media": "video", "ring": True,
        "answered": True, "duration_ms": 185000}}}))
write("render", "call-rejected", json.dumps({"type": "m.call.reject", "sender": "@ben:chat.test", "content": {
    "chat.call": {"caller": "@\"ana\":x", "invitee": "@ben:x", "media": "voice", "ring": True}}}))
write("render", "reply_reaction.json", json.dumps({"type": "m.room.message", "sender": "@ben:chat.test", "content": {
    "msgtype": "m.text", "body": "> <@ana:chat.test> old\n\nnew <b>x</b> @ana", "format": "org.matrix.custom.html",
    "formatted_body": "<mx-reply><blockquote>old &amp; gone</blockquote></mx-reply>new &lt;b&gt; <em>x</em> &#x1F600;",
    "m.relates_to": {"m.in_reply_to": {"event_id": "$q\"><script>"}},
    "m.mentions": {"user_ids": ["@ana:chat.test", "\"><img>"], "room": True}}}))
write("render", "reaction.json", json.dumps({"type": "m.reaction", "sender": "@ben:chat.test", "content": {
    "m.relates_to": {"rel_type": "m.annotation", "event_id": "$target\"onmouseover=", "key": "<b>\U0001F44D</b>"}}}))
write("render", "custom-type", json.dumps({"type": "x.<i>custom</i>", "sender": "@\"onmouseover=alert(1):x",
                                           "content": {}}))

# ---- config: TOML files as `chat config check` reads them
src = open(os.path.join(HERE, "..", "src", "config.rs"), encoding="utf-8").read()
# The example file is made by code now (`chat config example`, `config::example`): the seed
# written from it earlier stays as it is.
found = re.search(r'pub const EXAMPLE: &str = r#"(.*?)"#;', src, re.S)
if found:
    write("config", "example", found.group(1))
write("config", "packaged", open(os.path.join(HERE, "..", "packaging", "deb", "chat.toml"), encoding="utf-8").read())
write("config", "minimal", 'listen = "0.0.0.0:8080"\nserver_name = "chat.example.org"\n')
write("config", "https", 'listen = "[::]:8443"\ntls_self_signed = true\nhttp_redirect_listen = "0.0.0.0:80"\n'
                         'metrics_listen = "off"\n\n[turn]\nenabled = false\n')
write("config", "bad", 'listen = "nope"\n[limits]\nmax_body_bytes = 0\nlisen = 1\n')

# ---- ids: one identifier per file
for i, s in enumerate(["@ana:chat.test", "Ben", "@cy:other.test:8448", "[::1]:8448", "127.0.0.1:8080",
                       ROOM_A, EVENT, "chat-1.local", "@x=y/z+w:example.org", "@Ana:[2001:db8::1]:443"]):
    write("ids", f"id-{i}", s)
