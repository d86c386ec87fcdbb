"""The gateway config the Python benches run (rss.py, pool_reuse.py, stray_answers.py): 2 threads on 127.0.0.1:PORT,
access log off, every path to one upstream without health checks."""


def write(path, directory, port, upstream, upstream_extra=""):
    """Writes the config to `path`; its pid file and upgrade socket go in `directory`.
    `upstream_extra`: more lines for the upstream's table."""
    with open(path, "w") as f:
        f.write(f"""[server]
listen=["127.0.0.1:{port}"]
threads=2
pid_file="{directory}/pid"
upgrade_sock="{directory}/sock"
[log]
access=false
[upstreams.u]
servers=["127.0.0.1:{upstream}"]
health_check={{type="none"}}
{upstream_extra}
[[routes]]
path="/"
upstream="u"
""")
