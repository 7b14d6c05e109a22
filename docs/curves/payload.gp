set terminal pngcairo size 900,420 font ',10'
set output 'payload.png'
set datafile separator '\t'
set key autotitle columnhead left top
set logscale xy
set grid
set xlabel 'bytes'
set multiplot layout 1,1 title 'round trip of a byte string (embedded server)'
set ylabel 'GB/s'
plot 'payload.tsv' using 1:2 with linespoints lw 2 pt 7
unset multiplot
