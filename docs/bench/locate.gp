set terminal svg size 900,420 font "sans,11"
set output "docs/bench/locate.svg"
set title "Community lookup (criterion mean)"
set xlabel "communities"
set ylabel "nanoseconds"
set logscale xy
set key top left
plot for [c=2:5] "docs/bench/locate.dat" using 1:c with linespoints title columnheader(c) . " vertices"
