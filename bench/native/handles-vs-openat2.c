/* Issue 17: handle -> object by openat2 of the path beneath the root vs open_by_handle_at, each + statx + close (ns).
   cc -O2 -o /tmp/hb bench/native/handles-vs-openat2.c && /tmp/hb ROOT REL N   (as root: open_by_handle_at needs CAP_DAC_READ_SEARCH) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int argc,char**argv){
  const char*root=argv[1],*rel=argv[2]; int n=atoi(argv[3]);
  int rfd=open(root,O_RDONLY|O_DIRECTORY);
  struct file_handle*fh=malloc(sizeof*fh+MAX_HANDLE_SZ); fh->handle_bytes=MAX_HANDLE_SZ; int mid;
  if(name_to_handle_at(rfd,rel,fh,&mid,0)){perror("n2h");return 1;}
  struct statx x; struct open_how how={.flags=O_PATH|O_NOFOLLOW|O_CLOEXEC,.resolve=RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS};
  for(int round=0;round<3;round++){
  double t0=now();
  for(int i=0;i<n;i++){int fd=syscall(SYS_openat2,rfd,rel,&how,sizeof how); statx(fd,"",AT_EMPTY_PATH,STATX_BASIC_STATS|STATX_BTIME,&x); close(fd);}
  double t1=now();
  for(int i=0;i<n;i++){int fd=open_by_handle_at(rfd,fh,O_PATH|O_CLOEXEC); statx(fd,"",AT_EMPTY_PATH,STATX_BASIC_STATS|STATX_BTIME,&x); close(fd);}
  double t2=now();
  printf("depth path %s: openat2+statx %.0f ns, open_by_handle_at+statx %.0f ns\n",rel,(t1-t0)/n,(t2-t1)/n);}
  return 0;}
