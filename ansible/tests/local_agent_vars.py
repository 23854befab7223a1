"""Writes the extra vars of an app-side play that installs the agent on this machine: binary mode,
no service manager (start-stop-daemon), every path under a scratch root, run as the current user.

    local_agent_vars.py OUT ROOT AGENT_BIN '{"fleetgate_agent_node": "...", ...}'

The JSON object (the hub URL or URLs, tokens, node, labels) is merged over those defaults; the
result goes to OUT, for `ansible-playbook -e @OUT`.
"""

import grp
import json
import os
import pwd
import sys


def main():
    out, root, agent_bin, extra = sys.argv[1:5]
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    variables = {
        "fleetgate_agent_interval": "1s",
        "fleetgate_agent_collectors": ["host"],
        "fleetgate_agent_install_mode": "binary",
        "fleetgate_agent_service_manager": "none",
        "fleetgate_agent_binary_src": agent_bin,
        "fleetgate_agent_bin_path": root + "/usr/local/bin/fleetgate-agent",
        "fleetgate_agent_config_dir": root + "/etc/fleetgate-agent",
        "fleetgate_agent_state_dir": root + "/var/lib/fleetgate-agent",
        "fleetgate_agent_pid_file": root + "/run/fleetgate-agent.pid",
        "fleetgate_agent_log_file": root + "/var/log/fleetgate-agent.log",
        "fleetgate_agent_user": user,
        "fleetgate_agent_group": group,
        "fleetgate_agent_docker_group": "",
        "fleetgate_agent_wait_retries": 60,
        "fleetgate_agent_wait_delay": 1,
    }
    variables.update(json.loads(extra))
    with open(out, "w") as f:
        json.dump(variables, f)


if __name__ == "__main__":
    main()
