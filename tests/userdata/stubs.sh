#!/bin/bash
# Stand-ins for the commands the bootstrap runs on a real instance. Installed
# under several names (argv[0] tells which); every call is appended to
# $STUB_LOG, and simulated machine state lives in $STUB_STATE.
# $STUB_FAIL names one step to break: apt, fetch, role, build, start, health,
# ecr (GetAuthorizationToken refused), login, pull.
name=${0##*/}
printf '%s %s\n' "$name" "$*" >>"$STUB_LOG"
fail() { [ "${STUB_FAIL:-}" = "$1" ]; }

case $name in
  apt-get)
    if [[ " $* " == *" install "* ]]; then
      fail apt && { echo "E: Unable to locate package" >&2; exit 100; }
      touch "$STUB_STATE/docker-installed"
    fi
    ;;
  systemctl)
    case $1 in
      is-active) [ -e "$STUB_STATE/docker-running" ] ;;
      enable|start) touch "$STUB_STATE/docker-running" ;;
    esac
    ;;
  swapon)
    if [ "${1:-}" = "--show=NAME" ]; then
      cat "$STUB_STATE/swaps" 2>/dev/null
    else
      echo "$1" >>"$STUB_STATE/swaps"
    fi
    ;;
  fallocate) printf 'swap' >"${!#}" ;;
  mkswap) ;;
  sleep) ;;
  git)
    dest=${!#}
    mkdir -p "$dest/app/backend"
    printf 'services: {}\n' >"$dest/app/docker-compose.yml"
    ;;
  docker)
    [ -e "$STUB_STATE/docker-installed" ] || exit 127
    args=" $* "
    if [ "$1" = info ]; then exit 0; fi
    if [ "$1" = login ]; then
      cat >"$STUB_STATE/docker-login-password"
      fail login && { echo "Error response from daemon: login attempt failed" >&2; exit 1; }
      echo "Login Succeeded"
      exit 0
    fi
    case $args in
      *" compose version "*) echo "Docker Compose version v2.24.6" ;;
      *" config --services "*) printf 'backend\nfrontend\n' ;;
      *" build "*) fail build && { echo "failed to solve: npm ci" >&2; exit 1; }; echo "built ${!#}" ;;
      *" pull "*) fail pull && { echo "pull access denied, repository does not exist" >&2; exit 1; }; echo "pulled" ;;
      *" up "*) fail start && exit 1; touch "$STUB_STATE/up" ;;
      *" ps "*) echo "NAME STATUS"; echo "stylesphere-backend-1 Up" ;;
    esac
    ;;
  curl)
    url=${!#}
    out=""
    prev=""
    for a in "$@"; do
      [ "$prev" = "-o" ] && out=$a
      prev=$a
    done
    case $url in
      */latest/api/token) echo "imds-session-token" ;;
      */security-credentials/)
        fail role && exit 22
        echo "stylesphere-instance-role" ;;
      */meta-data/instance-id) echo "i-0stub1234567890ab" ;;
      */security-credentials/*)
        printf '{"Code":"Success","AccessKeyId":"ASIASTUBKEYID","SecretAccessKey":"stub/secret+KEY","Token":"stub-session-token=="}\n' ;;
      https://*.s3.*.amazonaws.com/*)
        cat >"$STUB_STATE/curl-config"
        fail fetch && { echo "curl: (22) The requested URL returned error: 403" >&2; exit 22; }
        cp "$STUB_RELEASE" "$out" ;;
      https://api.ecr.*.amazonaws.com/)
        cat >"$STUB_STATE/ecr-curl-config"
        fail ecr && { echo "curl: (22) The requested URL returned error: 400" >&2; exit 22; }
        printf '{"authorizationData":[{"authorizationToken":"%s","expiresAt":1.7e9}]}\n' \
          "$(printf 'AWS:stub-ecr-password' | base64 -w0)" ;;
      http://127.0.0.1:*)
        fail health && exit 7
        [ -e "$STUB_STATE/up" ] || exit 7 ;;
      *) echo "unexpected url $url" >&2; exit 6 ;;
    esac
    ;;
esac
exit 0
