set terminal pngcairo size 900,420 font ',10'
set output 'callers.png'
set datafile separator '\t'
set key autotitle columnhead left top
set logscale xy
set grid
set xlabel 'concurrent callers'
set multiplot layout 1,2 title 'W1/W2 with c concurrent callers (embedded server)'
set ylabel 'blocking calls/s'
plot 'callers.tsv' using 1:2 with linespoints lw 2 pt 7
set ylabel 'aio calls/s'
plot 'callers.tsv' using 1:4 with linespoints lw 2 pt 7
unset multiplot
