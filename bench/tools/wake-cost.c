/*
 * What waking a sleeping thread costs on this machine: a one-byte pipe
 * ping-pong between two processes pinned to CPU 0 and CPU OTHER, after GAP
 * microseconds of idle before each round (0: back to back). On this project's
 * virtual machine a CPU idle for a while halts, and waking it (a thread handed
 * work on it) is what an idle-machine request pays for every hand-off between
 * threads on different CPUs.
 * Build and run: cc -O2 -o /tmp/wake-cost bench/tools/wake-cost.c && /tmp/wake-cost GAP OTHER
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <unistd.h>
#include <time.h>
#include <stdlib.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);sched_setaffinity(0,sizeof s,&s);}
int main(int c,char**v){int a[2],b[2];pipe(a);pipe(b);int gap=atoi(v[1]);int other=atoi(v[2]);char x=0;
if(fork()==0){pin(other);for(;;){if(read(a[0],&x,1)!=1)_exit(0);write(b[1],&x,1);}}
pin(0);double tot=0;int n=200;double mx=0;for(int i=0;i<n;i++){if(gap)usleep(gap);double t=now();write(a[1],&x,1);read(b[0],&x,1);double d=now()-t;tot+=d;if(d>mx)mx=d;}
printf("gap %d us, cpu0<->cpu%d: round trip %.1f us (max %.0f)\n",gap,other,tot/n,mx);return 0;}
