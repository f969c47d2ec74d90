package main

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// wordList is a vocabulary of common English words plus words typical of
// scanned household and office documents. Words are drawn with a Zipf
// distribution, which gives text that compresses roughly like real prose
// (zstd ratio about 3:1).
var wordList = strings.Fields(`
the of and to in a is that for it as was with be by on not he this are or his
from at which but have an they you were her she there been one all we their has
would when if so no will more can out who them some these its into than time may
only other new any could very first should two also after our made what over
such before must through where most well back much then between each same down
under own while last never however another without being both those because
during against among since until about above below again further once here why
how few many every both either neither number part people year day week month
payment invoice amount total due date account customer reference number balance
tax return income statement annual report insurance policy premium coverage claim
contract agreement party parties terms conditions clause section page signature
signed dated address street city postal code country phone email letter dear
sincerely regards please find attached enclosed document copy original receipt
purchase order delivery shipment item quantity price unit discount net gross vat
bank transfer credit debit card interest rate loan mortgage property rent lease
tenant landlord deposit notice termination renewal period effective valid until
employer employee salary wage hours overtime leave holiday sick certificate medical
doctor hospital patient treatment prescription pharmacy health record examination
school university course grade diploma transcript student tuition fee semester
vehicle registration license plate inspection service repair warranty manual model
serial product support customer care electricity gas water utility meter reading
consumption tariff provider subscription internet mobile plan contract monthly
quarterly yearly previous current outstanding overdue reminder final settlement
refund adjustment correction confirmation approval request application form field
information details summary description note remarks comment attachment appendix
schedule table figure chart list overview introduction conclusion result analysis
data system process method approach level value change increase decrease report
government office department authority municipal federal state local public
registration identity passport visa permit residence citizen birth marriage
certificate family member child parent spouse beneficiary pension retirement fund
investment portfolio share stock bond dividend capital gain loss fiscal budget
expense cost revenue profit margin quarter forecast plan project meeting minutes
agenda decision action responsible deadline status update review approve reject
accept receive send provide include require ensure consider continue remain
become provide support increase reduce maintain establish develop create manage
general specific additional available necessary important relevant appropriate
standard special personal private professional financial legal technical annual
small large high low long short early late full partial simple complex direct
`)

// zipfTable maps a uniform 16-bit value to a word index with a Zipf-like
// distribution (P(k) proportional to (k+4)^-1.1), so drawing a word is one
// table lookup instead of rand.Zipf's logarithms.
var zipfTable = func() *[1 << 16]uint16 {
	var t [1 << 16]uint16
	weights := make([]float64, len(wordList))
	var sum float64
	for k := range weights {
		weights[k] = math.Pow(float64(k)+4, -1.1)
		sum += weights[k]
	}
	k, cum := 0, weights[0]/sum
	for i := range t {
		u := (float64(i) + 0.5) / float64(len(t))
		for u > cum && k < len(weights)-1 {
			k++
			cum += weights[k] / sum
		}
		t[i] = uint16(k)
	}
	return &t
}()

// textGen produces English-like text from wordList.
type textGen struct {
	r *rand.Rand
}

func newTextGen(r *rand.Rand) *textGen {
	return &textGen{r: r}
}

// word returns a Zipf-distributed word.
func (t *textGen) word() string {
	return wordList[zipfTable[t.r.Uint32()>>16]]
}

// appendText appends about n bytes of sentences to dst (it stops at the first
// word boundary past n and then trims to exactly n bytes).
func (t *textGen) appendText(dst []byte, n int) []byte {
	start := len(dst)
	for len(dst)-start < n {
		dst = t.appendSentence(dst)
		if t.r.IntN(6) == 0 {
			dst = append(dst, '\n')
		} else {
			dst = append(dst, ' ')
		}
	}
	return dst[:start+n]
}

// appendSentence appends one sentence, occasionally with numbers, amounts or
// dates as found in invoices and letters.
func (t *textGen) appendSentence(dst []byte) []byte {
	words := 5 + t.r.IntN(16)
	for i := 0; i < words; i++ {
		if i > 0 {
			dst = append(dst, ' ')
		}
		switch k := t.r.Uint32() % 40; {
		case k == 0:
			dst = strconv.AppendInt(dst, int64(t.r.IntN(100000)), 10)
		case k == 1:
			dst = strconv.AppendInt(dst, int64(t.r.IntN(10000)), 10)
			dst = append(dst, '.')
			c := t.r.IntN(100)
			dst = append(dst, byte('0'+c/10), byte('0'+c%10))
			dst = append(dst, " EUR"...)
		case k == 2:
			dst = strconv.AppendInt(dst, int64(2000+t.r.IntN(26)), 10)
			dst = append(dst, '-')
			m := 1 + t.r.IntN(12)
			dst = append(dst, byte('0'+m/10), byte('0'+m%10), '-')
			d := 1 + t.r.IntN(28)
			dst = append(dst, byte('0'+d/10), byte('0'+d%10))
		default:
			w := t.word()
			if i == 0 {
				dst = append(dst, w[0]-'a'+'A')
				dst = append(dst, w[1:]...)
			} else {
				dst = append(dst, w...)
			}
		}
	}
	return append(dst, '.')
}

// title returns a short document title.
func (t *textGen) title() string {
	n := 2 + t.r.IntN(5)
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		w := t.word()
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}
