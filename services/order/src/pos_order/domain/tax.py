"""Tax, in the order domain: what a location charges on a line by the line's tax category.

The rules, stated once:

- **Per line, then summed.** Each line's tax is computed on what the customer pays for that
  line (its list total less its discounts: discounts come before tax) and rounded by `Money`'s
  one rule (half away from zero); the order's tax is the sum of its lines' taxes.
- **More than one tax on a line** (a state and a city tax): each is computed and rounded on its
  own, in the order the location lists them. A simple tax is a rate of the line's taxable
  amount; a **compound** tax is a rate of the taxable amount plus the taxes listed before it
  (Quebec's former QST on GST, some excise duties).
- **Exclusive** (US): the price excludes the tax, which is added on top. **Inclusive** (VAT):
  the shelf price contains the tax; the tax contained is `gross - net`, where `net` is the gross
  divided by the taxes' combined factor and rounded; each tax's share of it is computed on the
  net and the last tax takes the rounding, so `net + taxes == gross` to the cent.
- **Exempt**: a product whose tax category is `exempt`, or a tax-exempt customer, pays none.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from pos_kit.money import round_half_away

BPS = 10_000
EXEMPT = "exempt"


@dataclass(frozen=True)
class TaxRate:
    name: str  # "tax", "state", "city", "VAT"
    bps: int
    compound: bool = False  # a rate of the amount plus the taxes listed before it


@dataclass(frozen=True)
class TaxRule:
    """What a location charges on one tax category."""

    rates: tuple[TaxRate, ...] = ()
    inclusive: bool = False


@dataclass(frozen=True)
class LineTax:
    net: int  # the line's amount without its tax
    taxes: tuple[tuple[str, int], ...]  # (name, amount) per tax, in the rule's order

    @property
    def total(self) -> int:
        return sum(a for _, a in self.taxes)


def _exclusive(net: int, rates: tuple[TaxRate, ...]) -> list[int]:
    taxes: list[int] = []
    for rate in rates:
        base = net + (sum(taxes) if rate.compound else 0)
        taxes.append(round_half_away(base * rate.bps, BPS))
    return taxes


def _factor(rates: tuple[TaxRate, ...]) -> Fraction:
    """gross / net for these rates, exactly (before any rounding)."""
    total = Fraction(1)
    taxes = Fraction(0)
    for rate in rates:
        share = Fraction(rate.bps, BPS)
        tax = share * (1 + taxes) if rate.compound else share
        taxes += tax
    total += taxes
    return total


def line_tax(amount: int, rule: TaxRule, exempt: bool = False) -> LineTax:
    """The tax of one line whose customer pays `amount` (after its discounts)."""
    if exempt or not rule.rates or amount == 0:
        return LineTax(amount, tuple((r.name, 0) for r in rule.rates))
    if not rule.inclusive:
        taxes = _exclusive(amount, rule.rates)
        return LineTax(amount, tuple(zip((r.name for r in rule.rates), taxes, strict=True)))
    exact = Fraction(amount) / _factor(rule.rates)
    net = round_half_away(exact.numerator, exact.denominator)
    taxes = _exclusive(net, rule.rates)
    taxes[-1] += amount - net - sum(taxes)  # the contained tax is exactly gross - net
    return LineTax(net, tuple(zip((r.name for r in rule.rates), taxes, strict=True)))


@dataclass(frozen=True)
class LocationTax:
    """One of a location's taxes as inventory states it."""

    name: str
    rate_bps: int
    rates_bps: dict[str, int]
    compound: bool = False


@dataclass(frozen=True)
class TaxTable:
    """A location's rules per tax category; a category it does not list has its default."""

    default: TaxRule
    by_category: dict[str, TaxRule]

    def rule_for(self, category: str) -> TaxRule:
        return self.by_category.get(category, self.default)

    @property
    def inclusive(self) -> bool:
        return self.default.inclusive

    @staticmethod
    def of_taxes(taxes: list[LocationTax], inclusive: bool = False) -> TaxTable:
        """Several taxes (a state's, a city's), each with its rates per category."""
        categories = sorted({c for t in taxes for c in t.rates_bps})

        def rule(category: str | None) -> TaxRule:
            return TaxRule(
                tuple(
                    TaxRate(
                        t.name,
                        t.rates_bps.get(category, t.rate_bps) if category else t.rate_bps,
                        t.compound,
                    )
                    for t in taxes
                ),
                inclusive,
            )

        return TaxTable(rule(None), {c: rule(c) for c in categories})

    @staticmethod
    def simple(
        rate_bps: int, per_category: dict[str, int] | None = None, inclusive: bool = False
    ) -> TaxTable:
        """One tax per category, as inventory's locations state them today."""
        return TaxTable(
            TaxRule((TaxRate("tax", rate_bps),), inclusive),
            {
                c: TaxRule((TaxRate("tax", bps),), inclusive)
                for c, bps in (per_category or {}).items()
            },
        )
