set terminal svg size 900,560 font "sans,11"
set output "docs/bench/nats.svg"
set multiplot layout 2,1 title "End to end through NATS"
set style data histograms
set style fill solid 0.8
set xtics rotate by -20 font ",9"
set bmargin 5
set logscale y
set ylabel "delivered events/s (log)"
plot "docs/bench/nats.dat" using 2:xtic(1) notitle
set ylabel "p99 ms (log)"
plot "docs/bench/nats.dat" using 3:xtic(1) notitle
unset multiplot
