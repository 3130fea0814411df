/* ThreadSanitizer builds only (TALON_SANITIZE_THREAD): Debian's libuv,
 * built without TSan, closes descriptors with syscall(SYS_close), which
 * TSan does not see. A descriptor one worker closed and another worker's
 * accept() got again then looks like a race between the two threads on
 * the same descriptor. This definition of syscall() takes precedence over
 * libc's for libuv and routes SYS_close through close(), which TSan
 * intercepts; every other number goes to libc's syscall() unchanged. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((visibility("default"))) long syscall(long number, ...);

long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++)
    a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_close)
    return close((int)a[0]);
  static long (*real)(long, ...);
  if (!real)
    real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
