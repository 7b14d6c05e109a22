set terminal pngcairo size 900,420 font ',10'
set output 'functions.png'
set datafile separator '\t'
set key autotitle columnhead left top
set logscale xy
set grid
set xlabel 'functions deployed'
set multiplot layout 1,3 title 'calls with n functions deployed (embedded server)'
set ylabel 'blocking calls/s'
plot 'functions.tsv' using 1:3 with linespoints lw 2 pt 7
set ylabel 'aio calls/s'
plot 'functions.tsv' using 1:4 with linespoints lw 2 pt 7
set ylabel 'start to first result (ms)'
plot 'functions.tsv' using 1:2 with linespoints lw 2 pt 7
unset multiplot
