/* assert() in the firmware runtime: a failed assertion is a trap, never a silent pass. */
#ifndef CK_ASSERT_H
#define CK_ASSERT_H
void abort(void) __attribute__((noreturn));
#define assert(c) ((c) ? (void)0 : abort())
#endif
