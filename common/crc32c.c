/* CRC-32C: the reflected polynomial 0x82F63B78, initial value and final
 * xor 0xFFFFFFFF, so hx_crc32c(0, "123456789", 9) == 0xE3069283. */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#define POLY 0x82F63B78u

static uint32_t table[256];
static bool have_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[i] = c;
    }
#if defined(__x86_64__)
    have_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t len)
{
    while (len--)
        c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t len)
{
    uint64_t c64 = c;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, sizeof w);
        c64 = __builtin_ia32_crc32di(c64, w);
    }
    c = (uint32_t)c64;
    for (; len > 0; p++, len--)
        c = __builtin_ia32_crc32qi(c, *p);
    return c;
}
#endif

uint32_t hx_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&once, init);
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (have_hw)
        return ~crc_hw(c, data, len);
#endif
    return ~crc_table(c, data, len);
}
