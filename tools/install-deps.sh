#!/usr/bin/env bash
# Installs the Debian packages Vienna's build and tests need, if any is missing. Safe to run again.
#   build:  cmake nasm clang pkg-config libssl-dev (C parts of the media crates: opus, openh264, libsrtp2)
#   tests:  curl (HTTPS checks of the admin endpoint), coturn (turnutils_uclient and turnutils_peer judge the relay),
#           sip-tester (SIPp judges the SIP registrar and proxy), baresip (a real user agent registers, sends
#           MESSAGE and holds an SRTP call through Vienna; two of them judge presence), libnice-dev (libnice in its OC2007/OC2007R2
#           modes is the MS-TURN client of tests/msturn_interop.rs), kamailio kamailio-presence-modules
#           (vienna-load's presence mode is tested against Kamailio's presence server), fonts-dejavu-core
#           (vienna-load's plotted reports lay out text with a TrueType font), pidgin-sipe libpurple-dev
#           libglib2.0-dev libxml2-dev (SIPE, the OCS/Lync-dialect client, run headless by
#           tools/sipe-client/sipe_driver.c, which tests/msclient_sipe.rs builds with gcc)
#   srtp:   libsrtp2-dev (vienna-srtp links Debian's libsrtp2 through pkg-config); gstreamer1.0-tools and
#           gstreamer1.0-plugins-base/good/bad (srtpenc/srtpdec judge SRTP interop;
#           a GStreamer Opus RTP participant joins the audio MCU)
set -euo pipefail

packages=(build-essential cmake nasm clang pkg-config libssl-dev curl ca-certificates coturn sip-tester
  baresip baresip-core libnice-dev
  libsrtp2-dev gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  kamailio kamailio-presence-modules fonts-dejavu-core
  pidgin-sipe libpurple-dev libglib2.0-dev libxml2-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-deps: missing ${missing[*]} and no apt-get here: install them by hand" >&2
  exit 1
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "install-deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
