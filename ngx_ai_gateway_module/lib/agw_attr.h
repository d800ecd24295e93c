/*
 * Compiler attributes the library's hot paths use, in one place.
 */

#ifndef AGW_ATTR_H
#define AGW_ATTR_H


/*
 * a function kept out of its caller: a rare branch whose inlined code
 * would give the caller's usual path a larger frame and more spills
 */
#if defined(__GNUC__)
#define AGW_NOINLINE  __attribute__((noinline))
#else
#define AGW_NOINLINE
#endif


#endif /* AGW_ATTR_H */
