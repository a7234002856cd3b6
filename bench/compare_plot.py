"""PNG plots for bench/compare, drawn by gnuplot from data files written
next to them (they stay there, so a plot can be redrawn or restyled by hand:
`gnuplot plot-name.gp` in that directory).

  echo-msgs-w<W>-s<SIZE>-d<DEPTH>.png   msgs/s vs connections, a line per
                                        server, min-max bars over the rounds
  echo-cpu-w<W>-s<SIZE>-d<DEPTH>.png    server CPU per message, user and
                                        system stacked, per server, grouped by
                                        connection count
  idle-rss.png                          RSS per idle connection per server
  sched-ratio.png                       urt/tokio per scheduler workload,
                                        one bar per worker count
  http-reqs.png                         HTTP requests/s vs wrk connections,
                                        a line per server and worker count
  http-cpu.png                          server CPU per HTTP request, user
                                        and system stacked
"""

import os
import shutil
import subprocess

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#393b79", "#637939"]
USER_COLOR = "#4477aa"
SYS_COLOR = "#ee6677"


def _q(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _terminal():
    out = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "pngcairo" in text:
        return "pngcairo noenhanced font 'sans,10'"
    return "png noenhanced font 'sans,10'"


def _subtitle(meta, rounds=True):
    m = meta["machine"]
    text = f"{m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}, {meta['date']}"
    return text + (f", {meta['rounds']} round(s)" if rounds else "")


def _run(outdir, name, script, pngs, errors):
    gp = os.path.join(outdir, name + ".gp")
    with open(gp, "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", gp], cwd=outdir, capture_output=True, text=True)
    png = os.path.join(outdir, name + ".png")
    if r.returncode == 0 and os.path.exists(png):
        pngs.append(png)
    else:
        errors.append(f"{name}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'gnuplot failed'}")


def _echo_labels(kind, key, title, ylabel):
    """File name, title and y label of an echo plot of point key (workers, size, depth)."""
    w, size, depth = key
    return {"name": f"echo-{kind}-w{w}-s{size}-d{depth}",
            "title": f"{title}: {size} B messages, depth {depth}, {w} server worker(s)", "ylabel": ylabel}


def _echo_msgs(outdir, term, meta, key, rows, servers, pngs, errors, labels=None):
    labels = labels or _echo_labels("msgs", key, "echo msgs/s vs connections",
                                    "messages per second (median; bars: min-max over rounds)")
    name = labels["name"]
    dat = os.path.join(outdir, name + ".dat")
    present = []
    with open(dat, "w") as f:
        for s in servers:
            pts = sorted((r["conns"], r["msgs_per_s"], r["msgs_per_s_min"], r["msgs_per_s_max"])
                         for r in rows if r["server"] == s and r["msgs_per_s"] is not None)
            if not pts:
                continue
            present.append(s)
            f.write(f"# {s}\n")
            for c, m, lo, hi in pts:
                f.write(f"{c} {m:.0f} {lo:.0f} {hi:.0f}\n")
            f.write("\n\n")
    if not present:
        return
    conns = sorted({r["conns"] for r in rows})
    plots = []
    for i, s in enumerate(present):
        col = COLORS[i % len(COLORS)]
        plots.append(f"{_q(name + '.dat')} index {i} using 1:2 with linespoints lw 2 pt {i % 13 + 1} ps 1.2 "
                     f"lc rgb {_q(col)} title {_q(s)}")
        plots.append(f"{_q(name + '.dat')} index {i} using 1:2:3:4 with yerrorbars lc rgb {_q(col)} pt 0 notitle")
    xt = ", ".join(f'"{c}" {c}' for c in conns)
    script = f"""set terminal {term} size 1200,750
set output {_q(name + '.png')}
set title {_q(labels["title"])} . "\\n" . {_q(_subtitle(meta))}
set xlabel "connections"
set ylabel {_q(labels["ylabel"])}
set grid
set key outside right top
{"set logscale x" if len(conns) > 1 and min(conns) > 0 else ""}
set xtics ({xt})
set xrange [{min(conns) * 0.7}:{max(conns) * 1.4}]
set yrange [0:*]
set format y "%.0s%c"
plot {", ".join(plots)}
"""
    _run(outdir, name, script, pngs, errors)


def _echo_cpu(outdir, term, meta, key, rows, servers, pngs, errors, labels=None):
    labels = labels or _echo_labels("cpu", key, "server CPU per message (user + system)",
                                    "server CPU ns per message")
    name = labels["name"]
    conns = sorted({r["conns"] for r in rows})
    parts = []
    first = True
    ymax = 0.0
    for c in conns:
        dat = f"{name}-c{c}.dat"
        n = 0
        with open(os.path.join(outdir, dat), "w") as f:
            f.write("server user_ns sys_ns\n")
            for s in servers:
                r = next((r for r in rows if r["server"] == s and r["conns"] == c), None)
                if not r or r.get("user_ns_per_msg") is None:
                    continue
                u, y = r["user_ns_per_msg"], r["sys_ns_per_msg"]
                ymax = max(ymax, u + y)
                f.write(f"{s} {u:.1f} {y:.1f}\n")
                n += 1
        if not n:
            continue
        label = f"{c} conn" + ("s" if c != 1 else "")
        t_user = "title 'user'" if first else "notitle"
        t_sys = "title 'system'" if first else "notitle"
        parts.append(f"newhistogram {_q(label)} lt 1, {_q(dat)} using 2:xtic(1) {t_user} lc rgb {_q(USER_COLOR)}, "
                     f"'' using 3 {t_sys} lc rgb {_q(SYS_COLOR)}")
        first = False
    if not parts:
        return
    width = max(1000, min(2400, 200 + 32 * len(servers) * len(conns)))
    script = f"""set terminal {term} size {width},750
set output {_q(name + '.png')}
set title {_q(labels["title"])} . "\\n" . {_q(_subtitle(meta))}
set ylabel {_q(labels["ylabel"])}
set style data histograms
set style histogram rowstacked title offset 0,-1.2
set style fill solid 0.9 border -1
set boxwidth 0.75
set key autotitle columnheader
set key inside left top
set xtics rotate by -50 left nomirror font ",9"
set grid ytics
set yrange [0:{ymax * 1.15 if ymax > 0 else 1}]
set bmargin 9
plot {", ".join(parts)}
"""
    _run(outdir, name, script, pngs, errors)


def _idle_rss(outdir, term, meta, mem_rows, pngs, errors):
    rows = [r for r in mem_rows if r.get("per_conn") is not None]
    if not rows:
        return
    name = "idle-rss"
    with open(os.path.join(outdir, name + ".dat"), "w") as f:
        for r in rows:
            label = r['server'] + (f"/{r['kind']}" if r.get('kind') else "")
            f.write(f"{label} {r['per_conn'] / 1024:.2f}\n")
    held = max(r["held"] for r in rows)
    script = f"""set terminal {term} size 1000,600
set output {_q(name + '.png')}
set title {_q(f'server RSS per idle connection ({held} connections)')} . "\\n" . {_q(_subtitle(meta, False))}
set ylabel "KiB per connection"
set style data histograms
set style fill solid 0.9 border -1
set boxwidth 0.7
set yrange [0:*]
set grid ytics
set xtics rotate by -40 left nomirror
set bmargin 7
unset key
plot {_q(name + '.dat')} using 2:xtic(1) lc rgb {_q(COLORS[0])}, '' using 0:2:(sprintf("%.1f", $2)) with labels offset 0,0.7 notitle
"""
    _run(outdir, name, script, pngs, errors)


def _sched(outdir, term, meta, sched_rows, pngs, errors):
    if not sched_rows or not any(r.get("ratio") for r in sched_rows):
        return
    name = "sched-ratio"
    workers = sorted({r["workers"] for r in sched_rows})
    workloads = []
    for r in sched_rows:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    lo, hi = 1.0, 1.0
    with open(os.path.join(outdir, name + ".dat"), "w") as f:
        f.write("workload " + " ".join(f'"{w} worker{"s" if w > 1 else ""}"' for w in workers) + "\n")
        for wl in workloads:
            cells, notes = [], []
            for w in workers:
                r = next((r for r in sched_rows if r["workload"] == wl and r["workers"] == w), None)
                if r and r.get("ratio"):
                    cells.append(f"{r['ratio']:.3f}")
                    lo, hi = min(lo, r["ratio"]), max(hi, r["ratio"])
                else:
                    cells.append("?")
                    for who in ("urt", "tokio"):
                        flag = r and r.get(who + "_flag")
                        if flag and f"{who} {flag}" not in notes:
                            notes.append(f"{who} {flag}")
            label = wl + ("\\n(" + ", ".join(notes) + ")" if notes else "")
            f.write(f'"{label}" ' + " ".join(cells) + "\n")
    n = len(workers)
    plots = []
    for i in range(n):
        src = _q(name + ".dat") if i == 0 else "''"
        xt = ":xtic(1)" if i == 0 else ""
        plots.append(f"{src} using {i + 2}{xt} title columnheader({i + 2}) lc rgb {_q(COLORS[i % len(COLORS)])}")
    for i in range(n):
        plots.append(f"'' using ($0 + ({i} - {(n - 1) / 2.0}) / {n + 1.0}):{i + 2}:(sprintf(\"%.2f\", ${i + 2})) "
                     f"with labels offset 0,0.7 font ',8' notitle")
    ymin, ymax = lo / 1.6, hi * 1.8
    script = f"""set terminal {term} size 1200,700
set output {_q(name + '.png')}
set title "scheduler: urt per-op time / Tokio per-op time (below 1: urt faster; log scale)\\n" . {_q(_subtitle(meta))}
set ylabel "urt / tokio (median ns per op)"
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set logscale y 2
set yrange [{ymin:.4f}:{ymax:.4f}]
set ytics ("1/256" 0.00390625, "1/64" 0.015625, "1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64, "256" 256)
set grid ytics
set xtics rotate by -25 left nomirror font ",9"
set bmargin 8
set rmargin 8
set key inside left top autotitle columnheader
set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead lw 2 dt 2 lc rgb "black" front
plot {", ".join(plots)}
"""
    _run(outdir, name, script, pngs, errors)


def make_plots(outdir, echo_rows, mem_rows, sched_rows, meta):
    """Returns (list of PNG paths, why there are none or None)."""
    if not shutil.which("gnuplot"):
        return [], "gnuplot is not installed (bash tools/deps.sh gnuplot-nox)"
    term = _terminal()
    pngs, errors = [], []
    servers = meta["servers"]
    keys = []
    for r in echo_rows:
        k = (r["workers"], r["size"], r["depth"])
        if k not in keys:
            keys.append(k)
    for k in keys:
        rows = [r for r in echo_rows if (r["workers"], r["size"], r["depth"]) == k]
        _echo_msgs(outdir, term, meta, k, rows, servers, pngs, errors)
        _echo_cpu(outdir, term, meta, k, rows, servers, pngs, errors)
    _idle_rss(outdir, term, meta, mem_rows, pngs, errors)
    _sched(outdir, term, meta, sched_rows, pngs, errors)
    why = None
    if errors:
        why = "; ".join(errors)
    return pngs, why


def make_http_plots(outdir, http_rows, meta):
    """The HTTP matrix's plots (bench/compare's http rows); returns (PNG
    paths, why there are none or None). A series per server and worker
    count, drawn like the echo plots."""
    if not http_rows:
        return [], None
    if not shutil.which("gnuplot"):
        return [], "gnuplot is not installed (bash tools/deps.sh gnuplot-nox)"
    term = _terminal()
    pngs, errors = [], []
    rows, series = [], []
    for r in http_rows:
        s = f"{r['server']}-w{r['workers']}"   # no spaces: gnuplot splits data columns on them
        if s not in series:
            series.append(s)
        rows.append(dict(r, server=s))
    _echo_msgs(outdir, term, meta, None, rows, series, pngs, errors, labels={
        "name": "http-reqs", "title": "HTTP requests/s vs wrk connections (GET /, keep-alive; -wN: N server workers)",
        "ylabel": "requests per second (median; bars: min-max over rounds)"})
    _echo_cpu(outdir, term, meta, None, rows, series, pngs, errors, labels={
        "name": "http-cpu", "title": "server CPU per HTTP request (user + system; -wN: N server workers)",
        "ylabel": "server CPU ns per request"})
    return pngs, "; ".join(errors) or None
