# The awk side of the combined catch-up (bench/formats.py): bench/awk/aggregate.awk's work over the
# combined log the bench derives from its TSV log (latency in ms as the last field, `-` for none).
# Fields split on `"`: $2 is the request, $3 ` status bytes `, the last field ` latency`. Output as
# aggregate.awk's (C, H, N, B lines).
BEGIN {
    FS = "\""
    nb = split("5 10 25 50 75 100 250 500 750 1000 2500 5000 7500 10000", bound, " ")
    for (i = 1; i <= nb; i++) bound[i] += 0
}
NF != 7 { bad++; next }
{
    sp = index($2, " ")
    if (!sp) { bad++; next }
    method = substr($2, 1, sp - 1)
    rest = substr($2, sp + 1)
    sp = index(rest, " ")
    target = sp ? substr(rest, 1, sp - 1) : rest
    split($3, sb, " ")
    if (target in cache) {
        route = cache[target]
    } else {
        route = normalize(target)
        cache[target] = route
    }
    k = route SUBSEP method SUBSEP sb[1]
    count[k]++
    bytes[k] += sb[2]
    lat = substr($7, 2)
    if (lat != "-") {
        lat += 0
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
