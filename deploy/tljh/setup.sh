#!/usr/bin/env bash
# labkit on The Littlest JupyterHub, on a fresh Ubuntu/Debian server with a DNS name.
# Install TLJH first (its own installer, with --admin for the trainer), then, from a
# clone of this repository, as root:
#   LABKIT_HUB_DOMAIN=hub.example.org LABKIT_HUB_EMAIL=trainer@example.org deploy/tljh/setup.sh
# Idempotent. Secrets: none here; TLJH keeps its own, trainees choose their passwords.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${LABKIT_HUB_DOMAIN:?the hub's DNS name}" "${LABKIT_HUB_EMAIL:?an e-mail for Let's Encrypt}"

# the trainees' environment (TLJH's user environment) and QEMU for notebook 06
/opt/tljh/user/bin/pip install -r deploy/requirements.txt
/opt/tljh/user/bin/pip install --no-deps .
apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils

# a real authenticator: trainees sign up, the trainer authorizes them at /hub/authorize
/opt/tljh/hub/bin/pip install 'jupyterhub-nativeauthenticator>=1.3'
tljh-config set auth.type nativeauthenticator.NativeAuthenticator
tljh-config set auth.NativeAuthenticator.open_signup false
tljh-config set auth.NativeAuthenticator.minimum_password_length 10
tljh-config set auth.NativeAuthenticator.check_common_password true

# per-trainee limits (docs/trainer-guide.md section 8) and JupyterLab by default
tljh-config set limits.memory 1G
tljh-config set limits.cpu 1
tljh-config set user_environment.default_app jupyterlab

# idle culling: an hour idle stops a server; a 10-minute break kills nothing
tljh-config set services.cull.enabled true
tljh-config set services.cull.timeout 3600
tljh-config set services.cull.every 300
tljh-config set services.cull.users false

# HTTPS from Let's Encrypt (ports 80 and 443 must reach this machine)
tljh-config set https.enabled true
tljh-config set https.letsencrypt.email "$LABKIT_HUB_EMAIL"
tljh-config add-item https.letsencrypt.domains "$LABKIT_HUB_DOMAIN"

tljh-config reload proxy
tljh-config reload
echo "the trainees' link: $(python3 deploy/link.py "https://$LABKIT_HUB_DOMAIN")"
