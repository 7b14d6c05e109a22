set terminal pngcairo size 900,420 font ',10'
set output 'map.png'
set datafile separator '\t'
set key autotitle columnhead left top
set logscale xy
set grid
set xlabel 'items'
set multiplot layout 1,2 title 'map of n items (embedded server)'
set ylabel 'items/s'
plot 'map.tsv' using 1:2 with linespoints lw 2 pt 7
set ylabel 'caller peak RSS (MiB)'
plot 'map.tsv' using 1:3 with linespoints lw 2 pt 7
unset multiplot
