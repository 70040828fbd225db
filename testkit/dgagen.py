"""Domain generation algorithms for tests, re-implemented from their published descriptions,
and the benign name sets they must be told apart from.

Families (each a deterministic function of a day and a count; no real malware code):

* **Conficker.C-like**: 50,000 names a day, 4-10 random lower-case letters, one of ~110
  TLDs (Porras, Saidi, Yegneswaran: "An Analysis of Conficker's Logic and Rendezvous
  Points", SRI 2009, addendum C). We draw from a day-seeded PRNG.
* **CryptoLocker-like**: 1,000 names a day, 12-15 letters a-y from a xorshift mix of
  year, month, day and the index, TLDs com net biz ru org co.uk info (Dell SecureWorks
  Counter Threat Unit, "CryptoLocker Ransomware", 2013).
* **Hash-like** (Bamital / Dyre style): the hex digest of a day-dependent string,
  cut to 16-32 characters (Bamital used md5 hex names; Dyre sha256 prefixes).
* **Dictionary-glued** (Suppobox / Matsnu style): two or three common English words glued
  together (Suppobox: two words of a 384-word list, .net; Matsnu: verb + noun to 24
  letters), so a character model finds them English.
"""

from __future__ import annotations

import hashlib
import random
import string
from datetime import date

# ruff: noqa: SIM905
# (word and name lists read best as one text each, split into a list)

# Conficker.C drew from 110 TLDs; these are a representative part of its published list
CONFICKER_TLDS = (
    "com net org info biz ws cn cc de ru us eu in jp kr tw hk sg me mobi name tel "
    "at be ch cl co.uk cz dk es fr gr hu ie it lt lv nl no pl pt ro se si sk tr ua"
).split()
CRYPTOLOCKER_TLDS = ("com", "net", "biz", "ru", "org", "co.uk", "info")
HASH_TLDS = ("info", "com", "net")
GLUE_TLDS = ("net", "com")
# common English words, the kind Suppobox's and Matsnu's lists hold
GLUE_WORDS = (
    "again above after another answer around because become before begin behind believe "
    "below between black brought build called carry change children city close color "
    "could country course cover cross during early earth enough even every example family "
    "father field figure follow force found friend garden general great green ground group "
    "happen heard heavy horse house however hundred important inside island kept kind "
    "known large later learn leave letter light little live long machine major many march "
    "matter measure might minute money morning mother mountain music nation natural near "
    "never night nothing notice number object often order other paper party people perhaps "
    "picture place plain plant point power present problem produce question quick rather "
    "reach ready record remember river round science second several shall should simple "
    "since small sound south space special spring stand start state still story strong "
    "study such summer surface table though thought together toward travel tree trouble "
    "under until usual valley voice water weather where while white whole window winter "
    "without wonder world write yellow young"
).split()

# well-known human-made registrable names (the kind people type)
HUMAN_DOMAINS = (
    "google.com youtube.com facebook.com wikipedia.org amazon.com twitter.com instagram.com "
    "linkedin.com reddit.com netflix.com microsoft.com apple.com yahoo.com bing.com "
    "ebay.com paypal.com github.com stackoverflow.com office.com live.com outlook.com "
    "dropbox.com adobe.com spotify.com twitch.tv zoom.us salesforce.com wordpress.org "
    "mozilla.org debian.org ubuntu.com python.org nytimes.com bbc.co.uk cnn.com "
    "theguardian.com washingtonpost.com weather.com imdb.com booking.com tripadvisor.com "
    "craigslist.org etsy.com walmart.com target.com bestbuy.com homedepot.com ikea.com "
    "spiegel.de lemonde.fr corriere.it elpais.com nhk.or.jp asahi.com rakuten.co.jp "
    "baidu.com qq.com taobao.com sina.com.cn yandex.ru mail.ru vk.com naver.com "
    "university.edu harvard.edu stanford.edu mit.edu berkeley.edu cam.ac.uk ox.ac.uk "
    "whitehouse.gov nasa.gov nih.gov europa.eu un.org who.int cloudflare.com akamai.net "
    "fastly.com digicert.com letsencrypt.org verisign.com windowsupdate.com "
    "gstatic.com googleapis.com doubleclick.net fbcdn.net slack.com atlassian.net "
    "medium.com quora.com pinterest.com tumblr.com flickr.com vimeo.com soundcloud.com "
    "steampowered.com epicgames.com nintendo.com playstation.com xbox.com "
    "mcafee.com symantec.com kaspersky.com sophos.com trendmicro.com avast.com "
    "campus.example library.campus.example printer.campus.example"
).split()
# typing mistakes of the above
TYPOS = (
    "gooogle.com goggle.com facebok.com faceboook.com youtub.com yotube.com amazn.com "
    "amazom.com wikipdia.org twiter.com instagam.com linkedn.com redit.com netflx.com "
    "microsft.com yahooo.com paypall.com githb.com stackoverflw.com dropbx.com "
    "spotfy.com nytimes.co weathr.com"
).split()


def conficker_c(day: date, n: int) -> list[str]:
    """Conficker.C-like names: 4-10 random letters under one of many TLDs."""
    rng = random.Random(f"conficker-{day.isoformat()}")
    letters = string.ascii_lowercase
    return [
        "".join(rng.choice(letters) for _ in range(rng.randint(4, 10)))
        + "."
        + rng.choice(CONFICKER_TLDS)
        for _ in range(n)
    ]


def cryptolocker(day: date, n: int) -> list[str]:
    """CryptoLocker-like names: xorshift mix of the date and index, 12-15 letters a-y."""
    out = []
    for i in range(n):
        y = (day.year + i * 0x9E37) & 0xFFFFFFFF
        m = (day.month * 0x85EB + i) & 0xFFFFFFFF
        d = (day.day * 0xC2B2 + 7 * i + 1) & 0xFFFFFFFF
        length = 12 + (y ^ m ^ d) % 4
        chars = []
        for _ in range(length):
            y = (((y ^ (8 * y)) >> 11) ^ ((y & 0xFFFFFFF0) << 17)) & 0xFFFFFFFF
            m = (((m ^ (4 * m)) >> 25) ^ (16 * (m & 0xFFFFFFF8))) & 0xFFFFFFFF
            d = (((d ^ (d << 13)) >> 19) ^ ((d & 0xFFFFFFFE) << 12)) & 0xFFFFFFFF
            chars.append(chr((y ^ m ^ d) % 25 + 97))
        out.append("".join(chars) + "." + CRYPTOLOCKER_TLDS[i % len(CRYPTOLOCKER_TLDS)])
    return out


def hashed(day: date, n: int) -> list[str]:
    """Hash-like names: hex digests of the day and index, 16-32 characters."""
    out = []
    for i in range(n):
        digest = hashlib.md5(f"{day.isoformat()}-{i}".encode(), usedforsecurity=False)
        text = digest.hexdigest()
        out.append(text[: 16 + (i * 7) % 17] + "." + HASH_TLDS[i % len(HASH_TLDS)])
    return out


def glued_words(day: date, n: int) -> list[str]:
    """Suppobox/Matsnu-like names: two or three English words glued together."""
    rng = random.Random(f"glued-{day.isoformat()}")
    out = []
    for _ in range(n):
        words = [rng.choice(GLUE_WORDS) for _ in range(rng.choice((2, 2, 3)))]
        out.append("".join(words) + "." + rng.choice(GLUE_TLDS))
    return out


FAMILIES = {
    "conficker-c": conficker_c,
    "cryptolocker": cryptolocker,
    "hash": hashed,
    "dictionary": glued_words,
}


def browser_probes(seed: int, n: int = 3) -> list[str]:
    """Chromium's start-up probes: ``n`` single labels of 7-15 random letters (they
    detect resolvers that answer every name)."""
    rng = random.Random(f"probe-{seed}")
    return [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(7, 15)))
        for _ in range(n)
    ]


def cdn_names(n: int) -> list[str]:
    """Machine-made names that resolve: CDN and cloud hosts."""
    rng = random.Random("cdn")
    out = []
    for i in range(n):
        tag = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(13))
        out.append(
            (
                f"d{tag}.cloudfront.net",
                f"{tag}.s3.amazonaws.com",
                f"r{i % 9}---sn-{tag}.googlevideo.com",
            )[i % 3]
        )
    return out


def av_lookups(n: int) -> list[str]:
    """Anti-virus and reputation look-ups: long hashed labels under a vendor domain."""
    out = []
    for i in range(n):
        digest = hashlib.sha1(f"file-{i}".encode(), usedforsecurity=False).hexdigest()
        vendor = ("avqs.mcafee.com", "hashserver.cs.trendmicro.com", "sophosxl.net")[i % 3]
        out.append(f"{digest}.{vendor}")
    return out


# advertising and tracking domains an ad blocker answers NXDOMAIN for (Pi-hole / AdGuard
# style lists), roughly by how often pages call them; their names are human-made,
# though a dozen of them glue words together (doubleclick, googletagmanager)
TRACKER_DOMAINS = (
    "doubleclick.net googlesyndication.com google-analytics.com googletagmanager.com "
    "googleadservices.com googletagservices.com adnxs.com facebook.net amazon-adsystem.com "
    "criteo.com scorecardresearch.com taboola.com outbrain.com adsrvr.org rubiconproject.com "
    "pubmatic.com openx.net casalemedia.com moatads.com quantserve.com 2mdn.net hotjar.com "
    "adsafeprotected.com doubleverify.com demdex.net everesttech.net bluekai.com krxd.net "
    "rlcdn.com mathtag.com bidswitch.net sharethrough.com 33across.com contextweb.com "
    "lijit.com yieldmo.com smartadserver.com adform.net teads.tv tapad.com agkn.com "
    "mixpanel.com segment.io nr-data.net optimizely.com chartbeat.com branch.io "
    "appsflyer.com adjust.com ads-twitter.com clarity.ms adroll.com serving-sys.com "
    "innovid.com spotxchange.com 3lift.com indexww.com media.net sonobi.com gumgum.com "
    "omtrdc.net exelator.com crwdcntrl.net simpli.fi dotomi.com emxdgt.com yieldlab.net "
    "smaato.net inmobi.com applovin.com flurry.com zemanta.com adcolony.com vungle.com "
    "bounceexchange.com fullstory.com"
).split()
TRACKER_HOSTS = ("ads", "pixel", "stats", "t", "cdn", "sync", "match", "www", "static", "secure")
# suffixes of the Public Suffix List's private section that CDN and cloud hosts sit under
CDN_SUFFIXES = ("cloudfront.net", "akamaized.net", "herokuapp.com", "appspot.com")
# dynamic-DNS suffixes, also in the list's private section
DDNS_SUFFIXES = ("duckdns.org", "ddns.net", "no-ip.org", "hopto.org", "zapto.org", "dyndns.org")


def random_hosts(seed: str, n: int, suffixes: tuple[str, ...]) -> list[str]:
    """``n`` random host names (a letter and 13 letters or digits, as CloudFront's
    ``d1a2b3c4d5e6f7.cloudfront.net``) under ``suffixes`` in turn."""
    rng = random.Random(seed)
    chars = string.ascii_lowercase + string.digits
    return [
        rng.choice(string.ascii_lowercase)
        + "".join(rng.choice(chars) for _ in range(13))
        + "."
        + suffixes[i % len(suffixes)]
        for i in range(n)
    ]


def ddns_generated(day: date, n: int, suffixes: tuple[str, ...] = DDNS_SUFFIXES) -> list[str]:
    """A generator under dynamic-DNS suffixes: Conficker.C-like labels (4-10 random
    letters) under ``suffixes`` in turn."""
    rng = random.Random(f"ddns-{day.isoformat()}")
    letters = string.ascii_lowercase
    return [
        "".join(rng.choice(letters) for _ in range(rng.randint(4, 10)))
        + "."
        + suffixes[i % len(suffixes)]
        for i in range(n)
    ]
