set terminal svg size 900,420 font "sans,11"
set output "docs/bench/decisions.svg"
set title "Decision time (log scale)"
set ylabel "microseconds"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8
set xtics rotate by -20
set key top left
plot "docs/bench/decisions.dat" using 3:xtic(2) title "p50", "" using 4 title "p99"
