# The awk side of the catch-up comparison: the same aggregation logtaild does, for mawk and gawk.
#
#   awk -f bench/awk/aggregate.awk access.tsv
#
# Input: ip<TAB>METHOD target<TAB>status<TAB>bytes[<TAB>latency_ms]. Per (route, method, status): the
# request count and byte total; per (route, method): a latency histogram over logtaild's default
# bounds (per-bucket counts, a value equal to a bound falls in that bucket, as Prometheus' `le`).
# The route is the target without its query string or fragment, with all-digit path segments
# replaced by `:id`; a raw target's route is computed once and cached (logtaild caches too).
#
# What differs from logtaild: no validation (method whitelist, status 100-599, UTF-8, numbers are
# taken as awk numbers), no UUID or hex-token ids, no route cap, an unbounded cache, and no
# absolute-URI targets. Lines without exactly 4 or 5 fields or without a space in the request are
# counted as bad. Output at END: `C route method status count bytes`, `H route method bucket n`
# (bucket 1..N+1, N+1 is +Inf), `N nbounds`, `B bad_lines`.
BEGIN {
    FS = "\t"
    nb = split("5 10 25 50 75 100 250 500 750 1000 2500 5000 7500 10000", bound, " ")
    for (i = 1; i <= nb; i++) bound[i] += 0
}
NF != 4 && NF != 5 { bad++; next }
{
    sp = index($2, " ")
    if (!sp) { bad++; next }
    method = substr($2, 1, sp - 1)
    target = substr($2, sp + 1)
    if (target in cache) {
        route = cache[target]
    } else {
        route = normalize(target)
        cache[target] = route
    }
    k = route SUBSEP method SUBSEP $3
    count[k]++
    bytes[k] += $4
    if (NF == 5) {
        lat = $5 + 0
        for (b = 1; b <= nb && lat > bound[b]; b++) ;
        hist[route SUBSEP method SUBSEP b]++
    }
}
function normalize(t,    q, n, seg, i, out) {
    q = index(t, "?"); if (q) t = substr(t, 1, q - 1)
    q = index(t, "#"); if (q) t = substr(t, 1, q - 1)
    if (t == "") return "/"
    if (t !~ /\/[0-9]/) return t
    n = split(t, seg, "/")
    out = seg[1]
    for (i = 2; i <= n; i++) out = out "/" (seg[i] ~ /^[0-9]+$/ ? ":id" : seg[i])
    return out
}
END {
    for (k in count) {
        split(k, p, SUBSEP)
        printf "C\t%s\t%s\t%s\t%d\t%.0f\n", p[1], p[2], p[3], count[k], bytes[k]
    }
    for (k in hist) {
        split(k, p, SUBSEP)
        printf "H\t%s\t%s\t%s\t%d\n", p[1], p[2], p[3], hist[k]
    }
    printf "N\t%d\n", nb
    printf "B\t%d\n", bad
}
