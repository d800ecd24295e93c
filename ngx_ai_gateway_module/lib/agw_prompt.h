
/*
 * The start of a prompt as the model reads it: what prefix caches key on,
 * and what the prefix balancer hashes (SPEC 8.1, 8.2).  See agw_prompt.c.
 */


#ifndef _AGW_PROMPT_H_INCLUDED_
#define _AGW_PROMPT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define AGW_PROMPT_NONE     0            /* no prompt in the request */
#define AGW_PROMPT_FOUND    1
#define AGW_PROMPT_INVALID  -1           /* not a JSON object, or broken
                                            before the prefix was read */


/*
 * Writes the first cap bytes (or all, if shorter) of the prompt text of
 * the JSON request in[0..len), in model order, to out; *n is how many.
 * Returns AGW_PROMPT_FOUND, AGW_PROMPT_NONE or AGW_PROMPT_INVALID (then
 * *n is 0).  Reads no further than it needs: input past the prefix is not
 * checked.
 */
int agw_prompt_prefix(const uint8_t *in, size_t len, uint8_t *out,
    size_t cap, size_t *n);


#endif /* _AGW_PROMPT_H_INCLUDED_ */
