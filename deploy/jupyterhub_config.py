# JupyterHub for a labkit class on one machine (about 30 trainees: see
# docs/trainer-guide.md section 8 for the size of the machine).
#
#   sudo python3 -m venv /opt/hub && sudo /opt/hub/bin/pip install -r deploy/requirements-hub.txt
#   sudo npm install -g configurable-http-proxy@5
#   sudo python3 -m venv /opt/labkit-env && sudo /opt/labkit-env/bin/pip install \
#        -r deploy/requirements.txt && sudo /opt/labkit-env/bin/pip install --no-deps .
#   sudo apt-get install qemu-system-x86 qemu-utils        # notebook 06 live
#   sudo LABKIT_HUB_ADMIN=trainer LABKIT_HUB_DOMAIN=hub.example.org \
#        /opt/hub/bin/jupyterhub -f deploy/jupyterhub_config.py
#
# On The Littlest JupyterHub use deploy/tljh/setup.sh instead (TLJH writes its own
# configuration; this file's choices are made there with tljh-config).
#
# Nothing secret is in this file: the cookie secret and the proxy's token are made by
# JupyterHub in its state directory (mode 0600), TLS keys are read from the paths below,
# and the admin's password is chosen by the admin at sign-up.
import os
import sys

c = get_config()  # noqa: F821 - JupyterHub's config loader provides it

state = os.environ.get("LABKIT_HUB_STATE", "/srv/jupyterhub")
domain = os.environ["LABKIT_HUB_DOMAIN"]  # the name trainees type; its certificate below

# -- HTTPS in front of everything: JupyterHub's proxy terminates TLS on 443 ----------------
# (certbot certonly --standalone -d $LABKIT_HUB_DOMAIN makes these; renew with certbot renew)
c.JupyterHub.bind_url = "https://0.0.0.0:443"
c.JupyterHub.ssl_cert = os.environ.get("LABKIT_HUB_CERT",
                                       f"/etc/letsencrypt/live/{domain}/fullchain.pem")
c.JupyterHub.ssl_key = os.environ.get("LABKIT_HUB_KEY",
                                      f"/etc/letsencrypt/live/{domain}/privkey.pem")
c.JupyterHub.hub_ip = "127.0.0.1"  # the hub's API: only the proxy and the servers reach it
c.JupyterHub.cookie_secret_file = f"{state}/jupyterhub_cookie_secret"
c.JupyterHub.db_url = f"sqlite:///{state}/jupyterhub.sqlite"

# -- a real authenticator: NativeAuthenticator ---------------------------------------------
# Trainees sign up at https://HUB/hub/signup with their own password; the trainer
# authorizes them at https://HUB/hub/authorize (or shares one sign-up code: below).
c.JupyterHub.authenticator_class = "nativeauthenticator.NativeAuthenticator"
c.NativeAuthenticator.open_signup = False
c.NativeAuthenticator.minimum_password_length = 10
c.NativeAuthenticator.check_common_password = True
c.NativeAuthenticator.allowed_failed_logins = 5
c.NativeAuthenticator.seconds_before_next_try = 60
c.Authenticator.admin_users = {os.environ["LABKIT_HUB_ADMIN"]}
c.Authenticator.allow_all = True  # every user the trainer authorized

# -- one systemd unit per trainee, with enforced limits (as TLJH does) -----------------------
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.SystemdSpawner.dynamic_users = True  # no Unix account per trainee
c.SystemdSpawner.unit_name_template = "jupyter-{USERNAME}"
c.Spawner.cmd = [os.environ.get("LABKIT_ENV", "/opt/labkit-env") + "/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
# measured on a real hub (docs/trainer-guide.md section 8): a trainee's server with one
# notebook's kernel ~255 MiB, with all seven kernels open ~0.9 GiB
c.Spawner.mem_limit = "1G"
c.Spawner.mem_guarantee = "512M"
c.Spawner.cpu_limit = 1.0
c.Spawner.cpu_guarantee = 0.25  # one core per 4 trainees in a Run-All burst
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
c.JupyterHub.concurrent_spawn_limit = 10  # a room arriving together spawns in waves

# -- idle culling: a server idle for an hour stops; a 10-minute break kills nothing ---------
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler",
                "--timeout=3600", "--cull-every=300", "--concurrency=5"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
